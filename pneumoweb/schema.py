"""OpenAPI postprocessing: every operation documents the error answers it can give.

DRF answers these without the views saying so — 401 without credentials (or with a browser
session idle too long, accounts/idle.py), 403 without the permission, 404 for an object one may not
see, 400 for a bad parameter or body, 415 for a body in another media type, 429 past a rate
limit, 503 while the database is away — so they are
added here once, by what each operation has (a path id, a body, a throttle), rather than in
every ``extend_schema``. Which operations are throttled is read off the views themselves, so a new
throttled view cannot be left undocumented.
"""

ERROR = {
    "type": "object",
    "description": "`detail` for a request-wide error; otherwise one list of messages per field.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}
PUBLIC = {"/api/auth/token/"}


def response(description):
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def throttled_paths(generator):
    """Paths whose view has a throttle, from the endpoints the generator enumerated."""
    return {path for path, _regex, _method, view in generator.endpoints or ()
            if getattr(getattr(view, "cls", None), "throttle_classes", None)}


def add_error_responses(result, generator, request, public):
    throttled = throttled_paths(generator)
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})

            def add(code, description, responses=responses):
                responses.setdefault(str(code), response(description))

            if path not in PUBLIC:
                add(401, "No valid credentials (token or session); or a browser session signed out after "
                         "PNEUMOWEB_IDLE_TIMEOUT_SECONDS without activity (accounts/idle.py), which ends it.")
                add(403, "Signed in, but not allowed to do this.")
            parameters = {p.get("name") for p in operation.get("parameters", [])}
            if "{" in path:
                add(404, "No such object, or not one you may see.")
            elif "page" in parameters:
                add(404, "No such page of results.")
            if operation.get("parameters") or "requestBody" in operation:
                add(400, "A parameter or field is invalid; the messages say which.")
            if "requestBody" in operation:
                add(415, "The body is not in a media type this operation accepts.")
            if path in throttled:
                add(429, "Too many requests: wait and retry (Retry-After says how long).")
            add(503, "The database is briefly unavailable; nothing was changed. Retry after Retry-After seconds.")
    return result
