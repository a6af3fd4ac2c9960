"""API pagination that refuses a page it cannot read (DRF's default takes ``?page=`` as page 1)."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class StrictPageNumberPagination(PageNumberPagination):
    def paginate_queryset(self, queryset, request, view=None):
        page = request.query_params.get(self.page_query_param)
        if page is not None and not page.isdecimal():
            raise ValidationError({self.page_query_param: ["Give a page number (1, 2, …), or leave page out."]})
        return super().paginate_queryset(queryset, request, view)
