from .permissions import is_reviewer


def roles(request):
    user = getattr(request, "user", None)
    return {"is_reviewer": bool(user and user.is_authenticated and is_reviewer(user))}
