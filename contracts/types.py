"""Value types several contracts share."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

# A machine-readable code: instrument ids, red-flag codes, bands, language tags.
Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.:-]{1,64}$")]

# Who did something (acknowledged a page, resolved an episode …): the identity provider's ``sub``
# claim. It must be an opaque id — a UUID, a pairwise subject identifier — never an e-mail address
# or a name, because it travels in events and the audit log; tokens whose subject does not fit
# are refused at the door (services.chassis.auth), so every subject the services handle fits here.
SUBJECT_PATTERN = r"^[a-z0-9_.:-]{1,64}$"
Subject = Annotated[str, StringConstraints(pattern=SUBJECT_PATTERN)]
