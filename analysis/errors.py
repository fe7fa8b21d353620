"""The one exception the report raises for unusable input."""


class ReportInputError(ValueError):
    """The experiment folder cannot be reported on; the message says what is missing or wrong."""
