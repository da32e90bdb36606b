"""Load a year's official holidays and make-up working days (调休) into the escalation service's calendar table.

    python -m services.escalation.calendar_load deploy/calendar/2027.yml [--by ops-name]

The file holds `year`, `holidays` and `workdays` (ISO dates), optionally `version` and `source`; it is validated
like the API's POST /calendar/years and saved as the year's next version. Running services pick it up on the next
working-day clock they start. DATABASE_URL (the escalation role) is read from the environment or
services/escalation/config.yml.
"""
from __future__ import annotations

import services.common  # noqa: F401

import argparse
import json
import os
import sys

import yaml

from services.common.config import REPO_ROOT, load_config
from services.common.db import UnitOfWork, make_pool
from services.common.domain import DomainError
from services.escalation.service_layer import handlers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="YAML or JSON file with year, holidays, workdays")
    parser.add_argument("--by", default=os.environ.get("USER", "ops"), help="who loads it (recorded)")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    url = args.database_url or load_config(REPO_ROOT / "services" / "escalation" / "config.yml")["DATABASE_URL"]
    with open(args.file, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    pool = make_pool(url, "escalation", 1, "escalation-calendar-load")
    try:
        result = handlers.load_year(UnitOfWork(pool, "escalation"), handlers.Runtime(), doc, f"cli:{args.by}")
    except DomainError as exc:
        print(json.dumps({"error": exc.code, "field": exc.field, "message": exc.message}, ensure_ascii=False),
              file=sys.stderr)
        return 2
    finally:
        pool.close()
    print(json.dumps({"year": result["year"], "version": result["version"],
                      "holidays": len(result["holidays"]), "workdays": len(result["workdays"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
