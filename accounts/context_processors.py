from .roles import Role, has_role


def roles(request):
    user = request.user
    return {
        "is_technician": has_role(user, Role.TECHNICIAN),
        "is_doctor": has_role(user, Role.DOCTOR),
        "is_admin_role": has_role(user, Role.ADMIN),
    }
