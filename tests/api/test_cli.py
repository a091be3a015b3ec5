"""The command-line tools staff use to manage API keys."""

from __future__ import annotations


def test_keys_create_list_revoke(app, client):
    runner = app.test_cli_runner()
    created = runner.invoke(args=["keys", "create", "--role", "staff", "--label", "front desk"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert key.startswith("ck_staff_") and len(key) > 50
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/providers", headers=headers).status_code == 200

    listed = runner.invoke(args=["keys", "list"])
    assert "front desk" in listed.output and key not in listed.output  # never the secret

    public_id = key.split("_")[2]
    revoked = runner.invoke(args=["keys", "revoke", public_id])
    assert revoked.exit_code == 0
    assert client.get("/api/v1/providers", headers=headers).status_code == 401


def test_provider_key_needs_a_provider(app):
    result = app.test_cli_runner().invoke(args=["keys", "create", "--role", "provider",
                                                "--label", "x"])
    assert result.exit_code == 1
    assert "key_binding" in result.output
