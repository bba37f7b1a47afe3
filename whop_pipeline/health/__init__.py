"""Customer health: facts, churn risk and lead score per customer, learned from the account's own history."""
