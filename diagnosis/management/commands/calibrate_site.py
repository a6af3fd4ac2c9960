import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from diagnosis import site_points
from diagnosis.models import SiteOperatingPoint


class Command(BaseCommand):
    help = ("Refit a population's operating point on this site's reviewed studies (docs/OPERATIONS.md "
            "\"Site operating points\"). Without --apply it only shows the proposal: the current and proposed "
            "threshold, recall and specificity with 95 %% intervals over patients, the counts (exit status 2 when "
            "it would be refused). --apply makes it this site's point (with PNEUMOWEB_ERASURE_TWO_PERSON, "
            "another administrator approves it with --approve); --revert goes back to the model card's point.")

    def add_arguments(self, parser):
        parser.add_argument("--population", help="the population whose point to refit (pediatric, adult)")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--apply", action="store_true", help="make the proposal this site's operating point")
        action.add_argument("--approve", type=int, metavar="ID", help="approve the waiting site point ID")
        action.add_argument("--revert", action="store_true", help="go back to the model card's point")
        parser.add_argument("--by", help="the administrator's username (with --apply, --approve, --revert)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the figures as JSON")

    def handle(self, *args, population, apply, approve, revert, by, as_json, **options):
        try:
            if approve is not None:
                return self.approve(approve, self.administrator(by), as_json)
            if not population:
                raise CommandError("Name the population with --population (pediatric or adult).")
            if revert:
                ended = site_points.revert(population, by=self.administrator(by))
                return self.say({"reverted": [p.pk for p in ended], "population": population},
                                f"The {population} point is the model card's again "
                                f"(ended: {', '.join(f'#{p.pk} {p.status}' for p in ended)}).", as_json)
            if apply:
                point = site_points.apply(population, by=self.administrator(by))
                return self.said_point(point, as_json)
            proposal = site_points.propose(population)
        except site_points.CalibrationRefused as refused:
            raise CommandError(str(refused)) from None
        if as_json:
            self.stdout.write(dumps(proposal.figures))
        else:
            self.stdout.write("\n".join(site_points.summary_lines(proposal.figures)))
            for refusal in proposal.figures["refusals"]:
                self.stdout.write(f"REFUSED: {refusal}")
        if proposal.refused:
            raise CommandError("The proposal would be refused (see above).", returncode=2)

    def administrator(self, username):
        if not username:
            raise CommandError("Say who you are with --by USERNAME (an administrator).")
        user = get_user_model().objects.filter(username=username).first()
        if user is None or not (user.is_active and user.is_superuser):
            raise CommandError(f"{username!r} is not an active administrator.")
        return user

    def approve(self, pk, user, as_json):
        point = SiteOperatingPoint.objects.filter(pk=pk).first()
        if point is None:
            raise CommandError(f"There is no site point {pk}.")
        site_points.approve(point, by=user)
        return self.said_point(point, as_json)

    def said_point(self, point, as_json):
        if point.status == SiteOperatingPoint.Status.ACTIVE:
            text = (f"The {point.population} point is now the {point.described}: threshold {point.threshold:.4f} "
                    f"(the card's: {point.card_threshold:.4f}); new predictions use it.")
        else:
            text = (f"Site point #{point.pk} for {point.population} (threshold {point.threshold:.4f}) waits for a "
                    f"second administrator: calibrate_site --approve {point.pk} --by OTHER_ADMIN.")
        self.say({"id": point.pk, "status": point.status, "population": point.population,
                  "threshold": point.threshold, "band": [point.band_low, point.band_high],
                  "card_threshold": point.card_threshold}, text, as_json)

    def say(self, data, text, as_json):
        self.stdout.write(dumps(data) if as_json else text)


def dumps(data):
    return json.dumps(data, indent=2, sort_keys=True)
