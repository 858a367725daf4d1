"""Exit codes, as docs/design.md names them; `ogsync.runner` maps every outcome to one."""

EXIT_OK = 0
EXIT_ENDPOINT_FAILED = 1  # an endpoint failed, or another run holds the warehouse
EXIT_CONFIG = 2  # bad settings, flags or warehouse URL
EXIT_AUTH = 3  # the API refused the key
