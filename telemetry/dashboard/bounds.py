"""The API's parameter bounds, read by the routes (api.py) and by their description (openapi.py)."""

MAX_Q_CHARS = 200  # `q`, the text searched for in a site's url or title
MAX_VERSION_CHARS = 100  # `version`, a project version
DEFAULT_FIGURE_DAYS = 30  # figures: days before `to` when `from` is absent (`to` included)
MAX_FIGURE_DAYS = 366  # figures: the most days one request spans
