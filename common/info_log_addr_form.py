"""How addresses appear in informational log lines such as `from=<...>` and `to=<...>`
(Postfix's global/info_log_addr_form.c): info_log_address_format = external (the
default: the local part quoted as RFC 5321 requires) or internal (as stored).
"""

from pyfix.common import msg
from pyfix.common.quote_822 import QUOTE_FLAG_8BITCLEAN, quote_822_local

FORM_EXTERNAL = "external"
FORM_INTERNAL = "internal"
_form = None


def init(config):
    global _form
    value = config.get("info_log_address_format")
    if value not in (FORM_EXTERNAL, FORM_INTERNAL):
        msg.fatal('invalid parameter setting "%s = %s"' % ("info_log_address_format", value))
    _form = value


def info_log_addr_form(addr):
    if not addr or (_form or FORM_EXTERNAL) == FORM_INTERNAL:
        return addr
    # Postfix's quote_822_local() default is QUOTE_FLAG_8BITCLEAN: UTF-8 stays unquoted.
    return quote_822_local(addr, QUOTE_FLAG_8BITCLEAN)


info_log_addr_form_sender = info_log_addr_form
info_log_addr_form_recipient = info_log_addr_form
