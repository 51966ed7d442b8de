"""Who is an instance operator: staff, superusers and holders of the operator permission; API keys
only when they are an operator's own key with the admin scope."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Permission

from mcpgateway.authority import is_instance_operator, key_is_operator

pytestmark = pytest.mark.django_db


def user(name: str, **flags):
    return get_user_model().objects.create_user(name, **flags)


def test_it_counts_staff_as_operators():
    assert is_instance_operator(user("s", is_staff=True))


def test_it_counts_superusers_as_operators():
    assert is_instance_operator(user("su", is_superuser=True))


def test_it_counts_holders_of_the_operator_permission():
    holder = user("p")
    holder.user_permissions.add(Permission.objects.get(codename="operate_instance", content_type__app_label="mcpgateway"))
    assert is_instance_operator(get_user_model().objects.get(pk=holder.pk))


def test_it_does_not_count_team_members_anonymous_or_inactive_staff():
    assert not is_instance_operator(user("m"))
    assert not is_instance_operator(AnonymousUser())
    assert not is_instance_operator(user("gone", is_staff=True, is_active=False))


def test_it_counts_an_operator_key_only_with_the_admin_scope():
    staff = user("s", is_staff=True)
    assert key_is_operator(staff, {"read", "admin"}, service_account=False)
    assert not key_is_operator(staff, {"read", "run"}, service_account=False)


def test_it_never_counts_a_service_account_key():
    assert not key_is_operator(user("s", is_staff=True), {"admin"}, service_account=True)
