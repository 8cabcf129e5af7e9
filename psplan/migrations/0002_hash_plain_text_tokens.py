"""Tokens made before PS Plan hashed them sat in DRF's `authtoken_token` table as plain text.

They keep working: each becomes a knox token with the digest of the same key, and the plain-text table
is dropped. Databases that never had DRF's table are left alone.
"""

from django.db import migrations

LEGACY_TABLE = "authtoken_token"


def hash_plain_text_tokens(apps, schema_editor):
    from knox.crypto import hash_token  # the same digest the running app compares with
    from knox.settings import CONSTANTS

    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    auth_token = apps.get_model("knox", "AuthToken")
    table = connection.ops.quote_name(LEGACY_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name('key')}, user_id, created FROM {table}")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        digest = hash_token(key)
        auth_token(digest=digest, token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id).save(
            force_insert=True
        )
        # `created` is auto_now_add: only an update keeps the day the token was really made.
        auth_token.objects.filter(digest=digest).update(created=created)
    schema_editor.execute(f"DROP TABLE {table}")


class Migration(migrations.Migration):
    dependencies = [("psplan", "0001_api_tokens"), ("knox", "0009_extend_authtoken_field")]

    operations = [migrations.RunPython(hash_plain_text_tokens, migrations.RunPython.noop)]
