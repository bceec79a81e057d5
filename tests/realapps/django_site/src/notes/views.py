from django.http import HttpRequest, HttpResponse

from notes.models import Note


def index(request: HttpRequest) -> HttpResponse:
    texts = list(Note.objects.order_by("id").values_list("text", flat=True))
    return HttpResponse(f"{len(texts)} note(s): {'; '.join(texts)}\n", content_type="text/plain")
