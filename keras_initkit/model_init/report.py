"""A small table of result rows, shared by reinitialize() and lsuv()."""
import json


class Rows:
    """Rows of one result, as dicts with the same keys: iterable, indexable, printable.

    Attributes beyond the rows (totals such as LSUV's `layer_evaluations`) are
    set on the instance and included by `to_dict()`.
    """

    def __init__(self, columns, **totals):
        self.columns = tuple(columns)
        self.rows = []
        self.__dict__.update(totals)
        self._totals = tuple(totals)

    def append(self, **row):
        self.rows.append({column: row[column] for column in self.columns})

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]

    def to_dict(self):
        """Rows and totals, JSON-serializable."""
        out = {"rows": self.rows, **{name: getattr(self, name) for name in self._totals}}
        json.dumps(out)  # fails here, not in the caller's file, if something is not plain
        return out

    def table(self):
        """The rows as a fixed-width text table, then the totals."""
        def text(value):
            return f"{value:.4g}" if isinstance(value, float) else str(value)

        cells = [list(self.columns)] + [[text(r[c]) for c in self.columns] for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                 for row in cells]
        lines += [f"{name}: {text(getattr(self, name))}" for name in self._totals]
        return "\n".join(lines)

    def __repr__(self):
        return f"{type(self).__name__}({len(self.rows)} rows)"
