"""cleanup's per-process configuration: parameters, tables and address classes
(Postfix's cleanup_init.c).

Settings.load() runs before the privilege drop (tables may live where mail_owner cannot
read); everything a message needs is then read from the Settings object. Milters
(non_smtpd_milters, milter_header_checks) are not supported by pyfix's cleanup: a
non-empty non_smtpd_milters is reported once and ignored.
"""

from pyfix.common import header_opts, info_log_addr_form, msg
from pyfix.common.name_mask import name_code, name_mask
from pyfix.common.rewrite_clnt import RULE_LOCAL, RULE_REMOTE, Rewriter
from pyfix.common.strings import CHARS_COMMA_SP, tokens, unescape
from pyfix.maps.addr_find import AddressRules
from pyfix.maps.dict import FLAG_FOLD_FIX, FLAG_LOCK, FLAG_UTF8_REQUEST
from pyfix.maps.maps import Maps
from pyfix.maps.match_list import MATCH_FLAG_RETURN, string_list
from pyfix.queue.mail_queue import QueueLayout

CANON_FLAG_ENV_FROM = 1 << 0
CANON_FLAG_ENV_RCPT = 1 << 1
CANON_FLAG_HDR_FROM = 1 << 2
CANON_FLAG_HDR_RCPT = 1 << 3
MASQ_FLAG_ENV_FROM = 1 << 0
MASQ_FLAG_ENV_RCPT = 1 << 1
MASQ_FLAG_HDR_FROM = 1 << 2
MASQ_FLAG_HDR_RCPT = 1 << 3

EXT_PROP_CANONICAL = 1 << 0
EXT_PROP_VIRTUAL = 1 << 1
EXT_PROP_ALIAS = 1 << 2
EXT_PROP_FORWARD = 1 << 3
EXT_PROP_INCLUDE = 1 << 4
EXT_PROP_GENERIC = 1 << 5

HFROM_FORMAT_OBS = 0
HFROM_FORMAT_STD = 1

_ENV_FROM, _ENV_RCPT = "envelope_sender", "envelope_recipient"
_HDR_FROM, _HDR_RCPT = "header_sender", "header_recipient"
SEND_CANON_CLASSES = ((_ENV_FROM, CANON_FLAG_ENV_FROM), (_HDR_FROM, CANON_FLAG_HDR_FROM))
RCPT_CANON_CLASSES = ((_ENV_RCPT, CANON_FLAG_ENV_RCPT), (_HDR_RCPT, CANON_FLAG_HDR_RCPT))
CANON_CLASSES = SEND_CANON_CLASSES[:1] + RCPT_CANON_CLASSES[:1] \
    + SEND_CANON_CLASSES[1:] + RCPT_CANON_CLASSES[1:]
MASQ_CLASSES = ((_ENV_FROM, MASQ_FLAG_ENV_FROM), (_ENV_RCPT, MASQ_FLAG_ENV_RCPT),
                (_HDR_FROM, MASQ_FLAG_HDR_FROM), (_HDR_RCPT, MASQ_FLAG_HDR_RCPT))
EXT_PROP_NAMES = (("canonical", EXT_PROP_CANONICAL), ("virtual", EXT_PROP_VIRTUAL),
                  ("alias", EXT_PROP_ALIAS), ("forward", EXT_PROP_FORWARD),
                  ("include", EXT_PROP_INCLUDE), ("generic", EXT_PROP_GENERIC))

ADDR_MAP_FLAGS = FLAG_LOCK | FLAG_FOLD_FIX | FLAG_UTF8_REQUEST


class Settings:
    """What cleanup_pre_jail() and cleanup_post_jail() set up."""

    def __init__(self, config):
        self.config = config
        get, get_int, get_bool = config.get, config.get_int, config.get_bool
        self.hopcount_limit = get_int("hopcount_limit")
        self.dup_filter_limit = get_int("duplicate_filter_limit")
        self.qattr_count_limit = get_int("queue_file_attribute_count_limit")
        self.virt_recur_limit = get_int("virtual_alias_recursion_limit")
        self.virt_expan_limit = get_int("virtual_alias_expansion_limit")
        self.virt_addrlen_limit = get_int("virtual_alias_address_length_limit")
        self.body_check_len = get_int("body_checks_size_limit")
        self.auto_8bit_enc_hdr = get_bool("detect_8bit_encoding_header")
        self.always_add_hdrs = get_bool("always_add_missing_headers")
        self.mask_stray_cr_lf = get_bool("cleanup_replace_stray_cr_lf")
        self.delay_warn_time = config.get_time("delay_warning_time")
        self.empty_addr = get("empty_address_recipient")
        self.always_bcc = get("always_bcc") or ""
        self.rcpt_witheld = get("undisclosed_recipients_header") or ""
        self.remote_rwr_domain = get("remote_header_rewrite_domain") or ""
        self.line_limit = get_int("line_length_limit")
        self.header_limit = get_int("header_size_limit")
        self.token_limit = get_int("header_address_token_limit")
        self.message_limit = config.get_long("message_size_limit")
        self.enable_orcpt = get_bool("enable_original_recipient")
        self.smtputf8_enable = get_bool("smtputf8_enable")
        self.verp_filter = get("verp_delimiter_filter")
        self.myhostname = get("myhostname")
        self.long_queue_ids = get_bool("enable_long_queue_ids")
        self.disable_mime_input = get_bool("disable_mime_input_processing")
        self.strict_8bitmime = get_bool("strict_8bitmime")
        self.strict_7bit_hdrs = get_bool("strict_7bit_headers")
        self.strict_8bit_body = get_bool("strict_8bitmime_body")
        self.strict_encoding = get_bool("strict_mime_encoding_domain")
        self.mime_nesting_limit = get_int("mime_nesting_limit")
        self.mime_bound_len = get_int("mime_boundary_length_limit")
        self.in_flow_delay = config.get_time("in_flow_delay")
        self.ipc_timeout = config.get_time("ipc_timeout")
        self.trigger_timeout = config.get_time("trigger_timeout")
        self.queue_service = get("queue_service_name")
        self.header_checks_text = get("header_checks") or ""
        self.mimehdr_checks_text = get("mime_header_checks") or ""
        self.nesthdr_checks_text = get("nested_header_checks") or ""
        self.layout = QueueLayout(config)
        self.address_rules = AddressRules(config)
        self.rewriter = Rewriter(config)
        header_opts.init(get("message_drop_headers") or "")
        info_log_addr_form.init(config)
        self._tables(config)
        self._classes(config)
        self._filters(config)
        if get("non_smtpd_milters"):
            msg.warn("non_smtpd_milters: Milter applications are not supported by "
                     "this cleanup server -- ignoring them")

    def _maps(self, name, flags=ADDR_MAP_FLAGS):
        text = self.config.get(name) or ""
        return Maps(name, text, flags) if text.strip() else None

    def _tables(self, config):
        self.comm_canon_maps = self._maps("canonical_maps")
        self.send_canon_maps = self._maps("sender_canonical_maps")
        self.rcpt_canon_maps = self._maps("recipient_canonical_maps")
        self.virt_alias_maps = self._maps("virtual_alias_maps")
        self.header_checks = self._maps("header_checks", FLAG_LOCK)
        self.mimehdr_checks = self._maps("mime_header_checks", FLAG_LOCK)
        self.nesthdr_checks = self._maps("nested_header_checks", FLAG_LOCK)
        self.body_checks = self._maps("body_checks", FLAG_LOCK)
        self.send_bcc_maps = self._maps("sender_bcc_maps")
        self.rcpt_bcc_maps = self._maps("recipient_bcc_maps")
        exceptions = config.get("masquerade_exceptions") or ""
        self.masq_exceptions = string_list("masquerade_exceptions", exceptions,
                                           MATCH_FLAG_RETURN) if exceptions.strip() else None
        domains = config.get("masquerade_domains") or ""
        self.masq_domains = tokens(domains, CHARS_COMMA_SP) if domains.strip() else None

    def _classes(self, config):
        def mask(param, table, context="canonical_classes"):
            text = config.get(param) or ""
            return name_mask(context, table, text) if text else 0
        self.comm_canon_flags = mask("canonical_classes", CANON_CLASSES)
        self.send_canon_flags = mask("sender_canonical_classes", SEND_CANON_CLASSES)
        self.rcpt_canon_flags = mask("recipient_canonical_classes", RCPT_CANON_CLASSES)
        self.masq_flags = mask("masquerade_classes", MASQ_CLASSES, "masquerade_classes")
        self.ext_prop_mask = name_mask("propagate_unmatched_extensions", EXT_PROP_NAMES,
                                       config.get("propagate_unmatched_extensions") or "")
        value = config.get("header_from_format")
        self.hfrom_format = name_code((("standard", HFROM_FORMAT_STD),
                                       ("obsolete", HFROM_FORMAT_OBS)), value)
        if self.hfrom_format < 0:
            msg.fatal('invalid setting: "%s = %s"' % ("header_from_format", value))

    def _filters(self, config):
        reject = config.get("message_reject_characters") or ""
        strip = config.get("message_strip_characters") or ""
        self.reject_chars = set(unescape(reject).encode("utf-8", "surrogateescape")) \
            if reject else None
        self.strip_chars = set(unescape(strip).encode("utf-8", "surrogateescape")) \
            if strip else None

    def rewrite_context(self, value):
        """The header rewriting context for a `rewrite_context` attribute value, or
        False when the value is invalid."""
        if value == RULE_LOCAL:
            return RULE_LOCAL
        if value == RULE_REMOTE:
            return RULE_REMOTE if self.remote_rwr_domain else None
        return False
