"""API tokens: hashed at rest (knox), with an expiry; sign-in guarded by django-axes lockouts."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from knox.models import AuthToken
from knox.settings import knox_settings
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.throttling import AtomicScopedRateThrottle


class Credentials(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


IssuedToken = inline_serializer("IssuedToken", {
    "token": serializers.CharField(help_text="Send as `Authorization: Token <token>`; shown once, stored hashed."),
    "expiry": serializers.DateTimeField(allow_null=True),
})


class ObtainToken(APIView):
    """Exchange a username and password for a new API token (expires after PNEUMOWEB_TOKEN_TTL_HOURS)."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [AtomicScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(request=Credentials, responses={
        200: IssuedToken,
        400: OpenApiResponse(description="Wrong or missing credentials"),
        429: OpenApiResponse(description="Locked out after repeated failures, or too many requests"),
    })
    def post(self, request):
        credentials = Credentials(data=request.data)
        credentials.is_valid(raise_exception=True)
        # A locked-out username + address gets None here; axes' middleware answers 429 (lockout_response).
        user = authenticate(request=request._request, **credentials.validated_data)
        if user is None or not user.is_active:
            return Response({"detail": "Unable to sign in with the credentials given."},
                            status=status.HTTP_400_BAD_REQUEST)
        instance, token = AuthToken.objects.create(user=user, expiry=knox_settings.TOKEN_TTL)
        return Response({"token": token, "expiry": instance.expiry})


class RevokeToken(APIView):
    """Revoke the token this request was made with (``all=true``: every token of the account)."""

    @extend_schema(request=None, responses={204: OpenApiResponse(description="Revoked")})
    def post(self, request):
        if request.query_params.get("all") == "true" or request.data.get("all") in (True, "true"):
            request.user.auth_token_set.all().delete()
        elif isinstance(request.auth, AuthToken):
            request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
