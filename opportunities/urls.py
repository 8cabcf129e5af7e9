from django.urls import path

from opportunities import views

app_name = "opportunities"

urlpatterns = [
    path("", views.opportunity_list, name="list"),
    path("<str:salesforce_id>/", views.opportunity_row, name="row"),
    path("<str:salesforce_id>/edit/", views.edit_ps_fields, name="edit"),
]
