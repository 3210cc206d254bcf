"""Print a development bearer token (local stack only; refused when TAPER_ENV=production).

python -m services.chassis.devtoken --role clinician --panel <patient-uuid> [...]
python -m services.chassis.devtoken --role patient --patient <patient-uuid>
"""

from __future__ import annotations

import argparse
import uuid

from services.chassis.auth import Role, issue_dev_token
from services.chassis.settings import ServiceSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--role", choices=[r.value for r in Role], required=True)
    parser.add_argument("--subject", default=None)
    parser.add_argument("--patient", type=uuid.UUID, default=None)
    parser.add_argument("--panel", type=uuid.UUID, nargs="*", default=[])
    parser.add_argument("--hours", type=float, default=8.0)
    args = parser.parse_args()
    from datetime import timedelta

    settings = ServiceSettings(service_name="devtoken")
    print(
        issue_dev_token(
            settings,
            subject=args.subject or f"dev-{args.role}",
            role=args.role,
            patient_id=args.patient,
            panel=list(args.panel),
            ttl=timedelta(hours=args.hours),
        )
    )


if __name__ == "__main__":
    main()
