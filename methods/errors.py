"""User-facing errors of the PEFT library: one line that names the problem and the fix."""


class MethodError(ValueError):
    """Bad method input: unknown method, knob out of range, unsupported architecture."""


class BudgetUnreachable(MethodError):
    """The requested budget cannot be met by the method within tolerance."""
