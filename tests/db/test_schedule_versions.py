"""``versions.bump`` on the real database: every scope given gains one (created at 1 when
new) in the caller's transaction, once however often it is named, whatever the order; a
rolled-back bump leaves nothing (PostgreSQL writes the scopes as one array parameter)."""

from __future__ import annotations

import uuid

from service.domain.availability import versions
from service.extensions import database


def test_a_bump_adds_one_to_each_scope_once_in_its_transaction(app):
    with app.app_context():
        sessions = database().write_sessions
    provider, patient = (versions.provider_scope(uuid.uuid4()),
                         versions.patient_scope(uuid.uuid4()))
    chairs = versions.chairs_scope(uuid.uuid4())
    with sessions() as session:
        versions.bump(session, [provider, patient])
        session.commit()
    with sessions() as session:
        assert versions.read(session, [provider, patient, chairs]) == {
            provider: 1, patient: 1, chairs: 0, versions.ALL: 0}
        # Named twice, in any order, with a new scope: one more each, the new one at 1.
        versions.bump(session, [patient, chairs, provider, patient])
        versions.bump(session, [])
        session.commit()
    with sessions() as session:
        assert versions.read(session, [provider, patient, chairs]) == {
            provider: 2, patient: 2, chairs: 1, versions.ALL: 0}
        versions.bump(session, [provider, chairs])
        session.rollback()
    with sessions() as session:
        assert versions.read(session, [provider, patient, chairs]) == {
            provider: 2, patient: 2, chairs: 1, versions.ALL: 0}
