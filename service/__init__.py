"""Telehealth scheduling and consultation service.

``service.app.create_app`` builds the WSGI app (``service.wsgi``); ``python -m
service.scheduler`` sends the outboxes. Nothing is imported here, so a process that needs
only part of the service (the scheduler) does not load the HTTP layer (Flask routes,
marshmallow schemas, the OpenAPI spec, the CLI, Alembic).
"""
