"""What postconf does once its options are checked: the order of postconf.c's main()."""

import os

from pyfix.common import msg
from pyfix.common.config import MAIN_CF, MainCf

from pyfix.commands.postconf import other, show, user
from pyfix.commands.postconf import session as S

MASTER_MODES = S.MASTER_ENTRY | S.MASTER_FLD | S.MASTER_PARAM
EDIT_MODES = S.EDIT_CONF | S.EDIT_EXCL | S.COMMENT_OUT


def read_main_cf_for_other_modes(session):
    """mail_conf_read(): modes that only need main.cf to exist and parse."""
    session.set_config_dir()
    MainCf.read(os.path.join(session.config_dir, MAIN_CF), {})


def run(session, opts):
    mode = session.mode
    if opts.template_request:
        read_main_cf_for_other_modes(session)
        other.show_templates(opts.template_request, opts.args)
    elif mode & S.SHOW_MAPS:
        read_main_cf_for_other_modes(session)
        other.show_maps()
    elif mode & S.SHOW_LOCKS:
        other.show_locks()
    elif mode & MASTER_MODES and not mode & EDIT_MODES:
        show_master(session, opts)
    elif mode & S.SHOW_SASL_SERV:
        other.show_sasl_server_types()
    elif mode & S.SHOW_SASL_CLNT:
        other.show_sasl_client_types()
    elif mode & S.SHOW_TLS:
        other.show_tls(opts.tls_mode)
    elif mode & EDIT_MODES:
        if not opts.args:
            msg.fatal("missing service argument")
        from pyfix.commands.postconf import edit
        if mode & MASTER_MODES:
            edit.edit_master(session, mode, opts.args)
        else:
            edit.edit_main(session, mode, opts.args)
    else:
        show_main(session, opts)


def show_master(session, opts):
    from pyfix.commands.postconf import master_show
    session.read_master(fail_on_open_error=True)
    session.read_main()
    session.set_overrides(opts.overrides)
    session.register_builtin_parameters()
    session.register_service_parameters()
    user.UserParameters(session).register()
    mode = session.mode
    if mode & S.MASTER_FLD:
        master_show.show_fields(session, mode, opts.args)
    elif mode & S.MASTER_PARAM:
        master_show.show_params(session, mode, opts.args)
    else:
        master_show.show_entries(session, mode, opts.args)
    user.flag_unused_master_parameters(session)


def show_main(session, opts):
    mode = session.mode
    if not mode & S.SHOW_DEFS:
        session.read_main()
        session.set_overrides(opts.overrides)
    session.register_builtin_parameters()
    session.read_master(fail_on_open_error=False)
    session.register_service_parameters()
    if not mode & S.SHOW_DEFS:
        user.UserParameters(session).register()
    show.show_parameters(session, mode, opts.param_class, opts.args)
    if not mode & S.SHOW_DEFS:
        user.flag_unused_parameters(session)
