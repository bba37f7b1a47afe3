"""Typed views of Twenty's metadata, and the capabilities the loader derives from them at start
(docs/twenty-api.md#capability-discovery): field names, link names, unique fields, stage options.
Never a version string."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FieldMeta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str
    type: str
    label: str | None = None
    is_unique: bool = Field(default=False, alias="isUnique")
    is_custom: bool | None = Field(default=None, alias="isCustom")
    is_active: bool = Field(default=True, alias="isActive")
    options: list[dict[str, Any]] | None = None

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> FieldMeta:
        return cls.model_validate({**raw, "isUnique": bool(raw.get("isUnique"))})


class ObjectMeta(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name_singular: str
    name_plural: str
    is_custom: bool | None = None
    fields: dict[str, FieldMeta]

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> ObjectMeta:
        fields = [FieldMeta.from_api(f) for f in raw.get("fields") or []]
        return cls(
            id=raw["id"],
            name_singular=raw["nameSingular"],
            name_plural=raw["namePlural"],
            is_custom=raw.get("isCustom"),
            fields={f.name: f for f in fields if f.is_active},
        )

    def has(self, field: str) -> bool:
        return field in self.fields


class NoteTargetLinks(BaseModel):
    """NoteTarget's link fields: ``targetPersonId`` since v1.17, ``personId`` before."""

    person: str
    opportunity: str


class Capabilities(BaseModel):
    """What this workspace offers, read from the metadata API."""

    objects: dict[str, ObjectMeta]

    def object(self, singular: str) -> ObjectMeta:
        try:
            return self.objects[singular]
        except KeyError:
            raise KeyError(f"the Twenty workspace has no '{singular}' object") from None

    @property
    def note_target_links(self) -> NoteTargetLinks:
        fields = self.object("noteTarget").fields
        for person, opportunity in (
            ("targetPersonId", "targetOpportunityId"),
            ("personId", "opportunityId"),
        ):
            # A relation is listed either by its join column or by its relation name.
            if person in fields or person.removesuffix("Id") in fields:
                return NoteTargetLinks(person=person, opportunity=opportunity)
        raise KeyError("noteTarget has neither targetPersonId nor personId: unknown Twenty schema")

    @property
    def note_body_field(self) -> str:
        """``bodyV2`` (rich text, send markdown) where it exists, else the legacy ``body``."""
        return "bodyV2" if self.object("note").has("bodyV2") else "body"

    def stage_values(self) -> list[str]:
        stage = self.object("opportunity").fields.get("stage")
        return [o["value"] for o in (stage.options or [])] if stage else []

    def unique_fields(self, singular: str) -> list[str]:
        """Field paths the server matches upserts on, besides ``id`` (none for an object the
        workspace does not have yet, as in a dry run before the schema step)."""
        if singular not in self.objects:
            return []
        paths = []
        for field in self.objects[singular].fields.values():
            if not field.is_unique:
                continue
            if field.type == "EMAILS":
                paths.append(f"{field.name}.primaryEmail")
            elif field.type == "LINKS":
                paths.append(f"{field.name}.primaryLinkUrl")
            else:
                paths.append(field.name)
        return paths
