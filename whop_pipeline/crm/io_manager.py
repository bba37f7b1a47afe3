"""Stores CRM frames between the transform and the load: one pickle per asset, or per asset and
daily partition, so a single-run backfill of any range writes each day and any later range reads it.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

DAY_COLUMN = "_day"


class CrmFrameIOManager(dg.ConfigurableIOManager):
    """Partitioned frames must carry ``_day`` (the partition key of each row)."""

    base_dir: str | None = Field(
        default=None, description="Folder for frames; default: the instance's storage folder"
    )

    def _folder(self, context: dg.OutputContext | dg.InputContext) -> Path:
        if self.base_dir:
            root = Path(self.base_dir)
        elif context.has_asset_key and context.step_context is not None:
            root = Path(context.step_context.instance.storage_directory())
        else:
            root = Path(tempfile.gettempdir()) / "whop_pipeline_frames"
        folder = root / "crm_frames" / "__".join(context.asset_key.path)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @staticmethod
    def _write(path: Path, frame: pd.DataFrame) -> None:
        # Write then rename: a crash never leaves a half-written frame behind.
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            pickle.dump(frame, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        folder = self._folder(context)
        if not context.has_asset_partitions:
            self._write(folder / "all.pkl", obj)
            return
        keys = set(context.asset_partition_keys)
        stray = set(obj[DAY_COLUMN].unique()) - keys if len(obj) else set()
        if stray:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: rows outside the run's partitions "
                f"({sorted(stray)[:3]}): the transform must filter by partition window"
            )
        groups = dict(tuple(obj.groupby(DAY_COLUMN, sort=False))) if len(obj) else {}
        for key in keys:
            self._write(folder / f"{key}.pkl", groups.get(key, obj.iloc[0:0]))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        folder = self._folder(context)
        if not context.has_asset_partitions:
            paths = [folder / "all.pkl"]
        else:
            paths = [folder / f"{key}.pkl" for key in sorted(context.asset_partition_keys)]
        missing = [p.stem for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no stored frame for {missing[:5]}"
                f"{' and more' if len(missing) > 5 else ''}: materialize it for those partitions"
            )
        frames = []
        for path in paths:
            with path.open("rb") as handle:
                frames.append(pickle.load(handle))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
