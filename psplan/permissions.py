"""Roles, checked here only: readers (every signed-in user), engagement managers, staff admins."""

from __future__ import annotations

import functools

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db.models import Exists, OuterRef
from django.http import HttpResponseForbidden
from rest_framework.permissions import SAFE_METHODS, BasePermission

ENGAGEMENT_MANAGERS_GROUP = "engagement_managers"


def can_edit(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Engagement managers and staff may change PS data; everyone else signed in only reads."""
    if not user.is_authenticated:
        return False
    return user.is_staff or user.is_superuser or _in_engagement_managers_group(user)


def engagement_manager_of(user: AbstractBaseUser | AnonymousUser):
    """The signed-in user's EngagementManager record, or None; read with their role (see below)."""
    if not user.is_authenticated:
        return None
    _in_engagement_managers_group(user)
    return getattr(user, "engagement_manager", None)


# A page asks for the user's role (menus, buttons, guards) and their EM record (navigation, their board
# and work) several times: both come from one query, kept on the user object, which lives one request.
# Pages that read every EM anyway read the role with them (scoping.selectors.people) and remember it here.
_ROLE_ATTRIBUTE = "_psplan_in_engagement_managers_group"


def engagement_managers_group_of(user_id: int) -> Exists:
    """Whether the user is in the engagement managers' group, as an expression to read along other data."""
    return Exists(Group.objects.filter(user=user_id, name=ENGAGEMENT_MANAGERS_GROUP))


def remember_roles(user: AbstractBaseUser, *, in_engagement_managers_group: bool, engagement_manager) -> None:
    """Keep the role and EM record read along other data on the user object, for the rest of the request."""
    user._meta.get_field("engagement_manager").set_cached_value(user, engagement_manager)
    if engagement_manager is not None:
        engagement_manager._meta.get_field("user").set_cached_value(engagement_manager, user)
    setattr(user, _ROLE_ATTRIBUTE, in_engagement_managers_group)


def _in_engagement_managers_group(user: AbstractBaseUser) -> bool:
    known = getattr(user, _ROLE_ATTRIBUTE, None)
    if known is not None:
        return known
    in_group = Group.objects.filter(user=OuterRef("pk"), name=ENGAGEMENT_MANAGERS_GROUP)
    model = user._meta.model
    loaded = (
        model._default_manager.select_related("engagement_manager")
        .annotate(in_group=Exists(in_group))
        .get(pk=user.pk)
    )
    # Cached where the reverse one-to-one keeps it, so `user.engagement_manager` reads no more.
    engagement_manager = model._meta.get_field("engagement_manager")
    engagement_manager.set_cached_value(user, engagement_manager.get_cached_value(loaded))
    setattr(user, _ROLE_ATTRIBUTE, loaded.in_group)
    return loaded.in_group


def is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Staff administer engagement managers, territories and overrides of any EM."""
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


def editors_only(view):
    """Pages that change PS data answer 403 to readers (the API does the same through its permission)."""

    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        if not can_edit(request.user):
            return HttpResponseForbidden("Only engagement managers and admins can change PS data.")
        return view(request, *args, **kwargs)

    return guarded


def staff_only(view):
    """Pages that administer PS Plan itself answer 403 to everyone but staff."""

    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        if not is_admin(request.user):
            return HttpResponseForbidden("Only staff can do this.")
        return view(request, *args, **kwargs)

    return guarded


class ReadAnyWriteEngagementManager(BasePermission):
    """Any signed-in user reads; engagement managers and staff write."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or can_edit(request.user)


def roles(request) -> dict[str, bool]:
    """Template context: what the signed-in user may do, so pages hide what they cannot use."""
    user = getattr(request, "user", AnonymousUser())
    return {"user_can_edit": can_edit(user), "user_is_admin": is_admin(user)}


def set_roles(*, user: AbstractBaseUser, engagement_manager: bool, admin: bool) -> None:
    """Give or take the engagement-manager and admin roles; single sign-on keeps them in step with its claim."""
    group, _ = Group.objects.get_or_create(name=ENGAGEMENT_MANAGERS_GROUP)
    if engagement_manager:
        user.groups.add(group)
    else:
        user.groups.remove(group)
    setattr(user, _ROLE_ATTRIBUTE, engagement_manager)
    # PS Plan's admins are Django superusers: the admin site is where EMs, territories and tokens are managed.
    if (user.is_staff, user.is_superuser) != (admin, admin):
        user.is_staff = user.is_superuser = admin
        user.save(update_fields=["is_staff", "is_superuser"])
