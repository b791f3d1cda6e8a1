"""Write docs/to-download.schema.json from the message types (link_fetcher.messages): `make message-schema`."""

import json
from pathlib import Path

from link_fetcher.messages import json_schema

SCHEMA_PATH = Path(__file__).parents[1] / "docs" / "to-download.schema.json"

if __name__ == "__main__":
    SCHEMA_PATH.write_text(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n")
