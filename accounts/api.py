"""API tokens: hashed at rest (knox), with an expiry; sign-in guarded by django-axes lockouts.

An account with a second factor (accounts/) sends its current one-time code, or a recovery code, as
``otp_token`` beside the password; a wrong one counts with wrong passwords towards the lockout. An
account that must have a second factor and has none gets no token: it enrols in the web app first.
Every token is therefore issued after the same checks as a signed-in page.
"""

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.lockout import record_wrong_code
from accounts.second_factor import has_second_factor, must_use_second_factor, verify_code, wrong_code_message
from audit.trail import record_access
from core.throttling import AtomicScopedRateThrottle

from .sender_tokens import token_lifetime_for


class Credentials(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    otp_token = serializers.CharField(
        max_length=32, required=False, allow_blank=True, style={"input_type": "password"},
        help_text="The six-digit code the account's authenticator app shows now, or one of its recovery codes "
                  "(used up by this request). Required when the account has a second factor; ignored otherwise.")


# Refusals about the second factor, each with a machine-readable ``code`` beside the message.
OTP_REQUIRED = ("This account signs in with a second factor: send the code its authenticator app shows now "
                "(or a recovery code) as otp_token.", "otp_required")
OTP_INVALID = ("The one-time code is wrong, expired or already used.", "otp_invalid")
OTP_ENROLMENT_REQUIRED = ("This account must use a second factor and has none: enrol one in the web app first "
                          "(sign in at /accounts/login/), then ask for a token with its code.", "otp_enrolment_required")
OTP_REFUSAL_CODES = [code for _, code in (OTP_REQUIRED, OTP_INVALID, OTP_ENROLMENT_REQUIRED)]  # the schema's enum

Refusal = inline_serializer("TokenRefusal", {
    "detail": serializers.CharField(),
    "code": serializers.ChoiceField(
        choices=OTP_REFUSAL_CODES, required=False,
        help_text="Only on refusals about the second factor: otp_required (send otp_token), otp_invalid "
                  "(wrong, expired or used code; counts towards the lockout), otp_enrolment_required."),
})

IssuedToken = inline_serializer("IssuedToken", {
    "token": serializers.CharField(help_text="Send as `Authorization: Token <token>`; shown once, stored hashed."),
    "expiry": serializers.DateTimeField(allow_null=True),
})


class ObtainToken(APIView):
    """Exchange a username and password — and the one-time code of an account with a second factor — for a
    new API token (expires after PNEUMOWEB_TOKEN_TTL_HOURS)."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [AtomicScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(request=Credentials, responses={
        200: IssuedToken,
        # A refusal with `detail` (and `code`), or DRF's messages per field for a missing one (Error, pneumoweb/schema.py).
        400: OpenApiResponse({"anyOf": [{"$ref": "#/components/schemas/TokenRefusal"},
                                        {"$ref": "#/components/schemas/Error"}]}, description=(
            "Wrong or missing credentials; or, for an account with a second factor, `otp_token` missing "
            "(`code`: otp_required) or wrong (`code`: otp_invalid, counted towards the lockout)")),
        403: OpenApiResponse(Refusal, description=(
            "The account must use a second factor and has none (`code`: otp_enrolment_required): "
            "enrol in the web app first")),
        429: OpenApiResponse(description="Locked out after repeated failures (wrong passwords or codes), "
                                         "or too many requests"),
    })
    def post(self, request):
        credentials = Credentials(data=request.data)
        credentials.is_valid(raise_exception=True)
        # A locked-out username + address gets None here; axes' middleware answers 429 (lockout_response).
        user = authenticate(request=request._request, **credentials.validated_data)
        if user is None or not user.is_active:
            return Response({"detail": "Unable to sign in with the credentials given."},
                            status=status.HTTP_400_BAD_REQUEST)
        refusal = second_factor_refusal(request, user, credentials.validated_data.get("otp_token", ""))
        if refusal is not None:
            return refusal
        # A PACS sender's token lasts its own lifetime (accounts/sender_tokens.py), a person's the week.
        instance, token = AuthToken.objects.create(user=user, expiry=token_lifetime_for(user))
        # No session, so no user_logged_in: the trail is told here (a failed one goes through axes' signal).
        record_access(request._request, "signed in", user, what="for an API token")
        return Response({"token": token, "expiry": instance.expiry})


def second_factor_refusal(request, user, code):
    """None when ``user`` may have a token; else the answer that says what is missing."""
    if has_second_factor(user):
        if not code.strip():
            return refused(OTP_REQUIRED, status.HTTP_400_BAD_REQUEST)
        if verify_code(user, code) is None:
            # On Django's request, where axes' middleware looks: the failure that locks answers 429.
            record_wrong_code(request._request, user.get_username())
            return refused((wrong_code_message(user, OTP_INVALID[0]), OTP_INVALID[1]), status.HTTP_400_BAD_REQUEST)
        return None
    if must_use_second_factor(user):
        return refused(OTP_ENROLMENT_REQUIRED, status.HTTP_403_FORBIDDEN)
    return None


def refused(message_and_code, http_status):
    detail, code = message_and_code
    return Response({"detail": detail, "code": code}, status=http_status)


class RevokeToken(APIView):
    """Revoke the token this request was made with (``all=true``: every token of the account).

    Tokens only: the account's browser sessions go on (a script that revokes its tokens when done must
    not sign its clinician out). The web app's "Sign out everywhere" (/account/token/) and a password
    change end both.
    """

    @extend_schema(request=None, responses={204: OpenApiResponse(description="Revoked")}, parameters=[
        OpenApiParameter("all", bool, description=(
            "true: revoke every API token of the account, not only this one. Its browser sessions are not ended: "
            "\"Sign out everywhere\" in the web app, or a password change, ends those as well."))])
    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}  # a JSON list or string says nothing
        if request.query_params.get("all") == "true" or body.get("all") in (True, "true"):
            request.user.auth_token_set.all().delete()
        elif isinstance(request.auth, AuthToken):
            request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
