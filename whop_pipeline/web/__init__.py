"""The web application (`whop-pipeline serve`): the webhook receiver, Whop OAuth, the GraphQL API
and the settings page, in one Starlette app."""
