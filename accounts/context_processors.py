from .roles import Role, has_role, user_roles


def roles(request):
    user = request.user
    return {
        "user_role_names": sorted(user_roles(user)),
        "is_technician": has_role(user, Role.TECHNICIAN),
        "is_doctor": has_role(user, Role.DOCTOR),
        "is_admin_role": has_role(user, Role.ADMIN),
    }
