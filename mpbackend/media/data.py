"""Histogram and Table (user side): data logged as a value, stored as wandb stores it.

    Histogram(seq) --numpy.histogram, at the call--> Media("histogram", {bins, values})
        (stored inline in the history cell: {"_type": "histogram", "bins", "values"})
    Table(columns, data) --add_data/add_column--> rows kept here
        --log(): _mp_media(convert), each cell converted then--> Media("table", {columns}, rows)
        (the service writes media/table/<sha256>.table.parquet, or .table.json without pyarrow)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..shared.messages import Media as Sent
from .base import Media, as_numpy, is_array, need

MAX_BINS = 512  # as wandb


class Histogram(Media):
    """A histogram, as ``wandb.Histogram``: bin edges and counts, not an image.

    ``Histogram(sequence, num_bins=64)`` bins the values (numpy.histogram);
    ``Histogram(np_histogram=(counts, edges))`` takes bins made elsewhere
    (``len(edges) == len(counts) + 1``). ``histogram`` and ``bins`` hold them.
    """

    def __init__(self, sequence: Sequence | Any | None = None,
                 np_histogram: tuple[Any, Any] | None = None, num_bins: int = 64) -> None:
        what = "Histogram()"
        if np_histogram is not None:
            if not isinstance(np_histogram, (tuple, list)) or len(np_histogram) != 2:
                raise ValueError(f"{what}: np_histogram is (counts, bin_edges), as "
                                 "numpy.histogram returns it")
            counts, edges = (_floats(v, what) for v in np_histogram)
            if len(edges) != len(counts) + 1:
                raise ValueError(f"{what}: np_histogram has {len(counts)} counts and "
                                 f"{len(edges)} bin edges; edges must be one more")
        elif sequence is not None:
            np = need("numpy", "media", what)
            if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
                raise ValueError(f"{what}: num_bins must be a positive int, not {num_bins!r}")
            if num_bins > MAX_BINS:
                raise ValueError(f"{what}: num_bins is at most {MAX_BINS}")
            arr = as_numpy(sequence).astype(float).ravel()
            if arr.size and not np.isfinite(arr).all():
                raise ValueError(f"{what}: the values hold NaN or infinity")
            hist, bin_edges = np.histogram(arr, bins=num_bins)
            counts, edges = hist.tolist(), bin_edges.tolist()
        else:
            raise ValueError(f"{what} takes a sequence or np_histogram")
        self.histogram: list[float] = counts
        self.bins: list[float] = edges
        self._sent = Sent("histogram", {"values": counts, "bins": edges})


def _floats(values: Any, what: str) -> list:
    if is_array(values):
        values = as_numpy(values).tolist()
    if not isinstance(values, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{what}: np_histogram holds numbers only")
    return list(values)


def _kind(value: Any) -> str | None:
    """The type a Table column checks: None (any column takes None), number, ..."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Media):
        return type(value).__name__
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return _kind(value.item())
    return type(value).__name__


class Table(Media):
    """A table of rows, as ``wandb.Table``; cells may hold media (an Image per row).

    ``Table(columns, data)`` (rows as lists, a 2-D numpy array, or a DataFrame),
    ``Table(dataframe=df)``, ``rows=`` (wandb's older name). A column holds one
    type (numbers, text, bools or one media type, with None allowed) unless
    ``allow_mixed_types=True``: a row that breaks that raises TypeError at
    ``add_data``. What is logged is the table as it is at the ``log()`` call.
    Stored as parquet (with pyarrow; cells that are media or lists as JSON
    text) or as wandb's ``{"columns", "data"}`` JSON; read back with
    ``MediaRef.table()`` as a DataFrame.
    """

    MAX_ROWS = 10000  # kept for scripts that set it; rows beyond it are stored too

    def __init__(self, columns: Sequence[Any] | None = None, data: Any = None,
                 rows: Any = None, dataframe: Any = None, dtype: Any = None,
                 optional: bool | Sequence[bool] = True, allow_mixed_types: bool = False,
                 log_mode: str | None = "IMMUTABLE") -> None:
        if log_mode not in (None, "IMMUTABLE", "MUTABLE", "INCREMENTAL"):
            raise ValueError("Table(): log_mode is 'IMMUTABLE', 'MUTABLE' or 'INCREMENTAL'")
        self.log_mode = log_mode or "IMMUTABLE"
        self._mixed = bool(allow_mixed_types)
        self.data: list[list[Any]] = []
        self._kinds: list[str | None] = []
        if dataframe is None and data is not None and hasattr(data, "itertuples"):
            dataframe = data
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            source: Iterable[Any] = (list(r) for r in dataframe.itertuples(index=False))
        else:
            source = rows if data is None else data
            if is_array(source):
                arr = as_numpy(source)
                if arr.ndim != 2:
                    raise ValueError(f"Table(): data of shape {arr.shape} is not 2-D")
                source = arr.tolist()
        if columns is None:
            columns = ["Input", "Output", "Expected"]  # wandb's default
        self.columns: list[str] = [self._column_name(c) for c in columns]
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"Table(): column names repeat: {self.columns}")
        self._kinds = [None] * len(self.columns)
        for row in source or ():
            self.add_data(*row)

    @staticmethod
    def _column_name(name: Any) -> str:
        if isinstance(name, str):
            return name
        if isinstance(name, (int, float)) and not isinstance(name, bool):
            return str(name)
        raise TypeError(f"Table(): a column name is text, not {type(name).__name__}")

    def _check(self, row: Sequence[Any]) -> list[str | None]:
        kinds = list(self._kinds)
        for i, value in enumerate(row):
            kind = _kind(value)
            if kind is None or self._mixed:
                continue
            if kinds[i] is None:
                kinds[i] = kind
            elif kinds[i] != kind:
                raise TypeError(f"Table.add_data(): column {self.columns[i]!r} holds "
                                f"{kinds[i]} values, not {kind} ({value!r:.60}); "
                                "pass allow_mixed_types=True to mix them")
        return kinds

    def add_data(self, *data: Any) -> None:
        """Add a row: one value per column, in order."""
        if len(data) != len(self.columns):
            raise ValueError(f"Table.add_data(): {len(data)} values for "
                             f"{len(self.columns)} columns {self.columns}")
        self._kinds = self._check(data)
        self.data.append(list(data))

    def add_column(self, name: str, data: Sequence[Any] | Any, optional: bool = False) -> None:
        """Add a column (its values, one per row; the first column sets the rows)."""
        name = self._column_name(name)
        if name in self.columns:
            raise ValueError(f"Table.add_column(): there is a column {name!r} already")
        values = as_numpy(data).tolist() if is_array(data) else list(data)
        if self.columns and len(values) != len(self.data):
            raise ValueError(f"Table.add_column(): {len(values)} values for "
                             f"{len(self.data)} rows")
        kind: str | None = None
        for value in values:
            k = _kind(value)
            if k is None or self._mixed:
                continue
            if kind is None:
                kind = k
            elif kind != k:
                raise TypeError(f"Table.add_column(): {name!r} mixes {kind} and {k} values")
        if not self.columns:
            self.data = [[v] for v in values]
        else:
            for row, value in zip(self.data, values):
                row.append(value)
        self.columns.append(name)
        self._kinds.append(kind)

    def get_column(self, name: str, convert_to: str | None = None) -> Any:
        """A column's values, as a list (or a numpy array with ``convert_to="numpy"``)."""
        if name not in self.columns:
            raise KeyError(f"Table has no column {name!r} (it has {self.columns})")
        i = self.columns.index(name)
        col = [row[i] for row in self.data]
        if convert_to == "numpy":
            return need("numpy", "media", "get_column(convert_to='numpy')").array(col)
        if convert_to is not None:
            raise ValueError("get_column(): convert_to is None or 'numpy'")
        return col

    def get_index(self) -> list[int]:
        """The rows' indexes."""
        return list(range(len(self.data)))

    def get_dataframe(self) -> Any:
        """The table as a pandas DataFrame (media cells as the objects logged)."""
        pd = need("pandas", "pandas", "Table.get_dataframe()")
        return pd.DataFrame(self.data, columns=self.columns)

    def add_computed_columns(self, fn: Callable[[int, dict[str, Any]], dict[str, Any]]
                             ) -> None:
        """Add the columns ``fn(index, row_as_dict)`` returns for each row."""
        new = [fn(i, dict(zip(self.columns, row))) for i, row in enumerate(self.data)]
        names = list(new[0]) if new else []
        for name in names:
            self.add_column(name, [d.get(name) for d in new])

    def iterrows(self) -> Iterable[tuple[int, list[Any]]]:
        """``(index, row)`` for each row."""
        return enumerate(self.data)

    @property
    def ncols(self) -> int:
        return len(self.columns)

    @property
    def nrows(self) -> int:
        return len(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"<Table {len(self.data)} rows, columns {self.columns}>"

    def _repr_html_(self) -> str | None:
        """The table in Jupyter, as its DataFrame (when pandas is installed)."""
        try:
            return self.get_dataframe()._repr_html_()
        except ImportError:
            return None

    def _mp_media(self, convert: Callable[[Any], Any] | None = None) -> Sent:
        """The table as logged now; ``convert`` (log()'s value conversion) makes each
        cell plain data, a media cell its ``Media``."""
        rows = [[convert(v) if convert is not None else v for v in row] for row in self.data]
        return Sent("table", {"columns": list(self.columns), "log_mode": self.log_mode},
                    rows)
