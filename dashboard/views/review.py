"""The review pages (scaffold: replaced by the area's real views)."""

from django.shortcuts import render
from django.urls import path

from dashboard.access import team_view


@team_view()
def index(request):
    return render(request, "dashboard/placeholder.html", {"area": "review"})


urlpatterns = [path("", index, name="review-queue")]
