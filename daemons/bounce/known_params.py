"""The parameters a Postfix bounce(8) process knows, and so the only ones a bounce
template may name (bounce_template_lookup() uses mail_conf_lookup_eval(), which sees
only what main.cf sets and what the process registered): the global parameters of
global/mail_params.c, bounce's own, and the per-process ones. A template that names
another parameter, e.g. $smtpd_banner, is Postfix's fatal "undefined $name" error.
"""

GLOBAL_PARAMETERS = frozenset("""
    address_verify_negative_cache address_verify_service_name alias_database
    alternate_config_directories application_event_drain_time
    backwards_bounce_logfile_compatibility berkeley_db_create_buffer_size
    berkeley_db_read_buffer_size bounce_service_name cleanup_service_name
    command_directory compatibility_level daemon_directory
    daemon_table_open_error_is_fatal daemon_timeout data_directory debug_peer_level
    debug_peer_list default_database_type default_delivery_status_filter
    default_privs default_process_limit default_verp_delimiters defer_service_name
    delay_logging_resolution_limit deliver_lock_attempts deliver_lock_delay
    disable_dns_lookups disable_mime_input_processing disable_mime_output_conversion
    dns_ncache_ttl_fix_enable dnssec_probe dont_remove double_bounce_sender
    enable_idna2003_compatibility enable_long_queue_ids enable_original_recipient
    error_service_name export_environment fast_flush_domains fault_injection_code
    flush_service_name fork_attempts fork_delay hash_queue_depth hash_queue_names
    header_address_token_limit header_size_limit helpful_warnings import_environment
    in_flow_delay inet_interfaces inet_protocols info_log_address_format
    internal_mail_filter_classes ipc_idle ipc_timeout ipc_ttl known_tcp_ports
    line_length_limit lmdb_map_size mail_name mail_owner maillog_file
    maillog_file_compressor maillog_file_prefixes maillog_file_rotate_suffix
    max_idle max_use message_drop_headers message_size_limit meta_directory
    mime_boundary_length_limit mime_nesting_limit multi_instance_directories
    multi_instance_enable multi_instance_group multi_instance_name
    multi_instance_wrapper mydestination mydomain myhostname mynetworks
    mynetworks_style myorigin owner_request_special parent_domain_matches_subdomains
    pickup_service_name postlog_service_name process_id process_id_directory
    proxy_interfaces proxymap_service_name proxywrite_service_name queue_directory
    queue_service_name recipient_delimiter relay_domains relayhost
    respectful_logging rewrite_service_name send_cyrus_sasl_authzid setgid_group
    shlib_directory showq_service_name smtputf8_autodetect_classes smtputf8_enable
    soft_bounce stale_lock_time strict_7bit_headers strict_8bitmime
    strict_8bitmime_body strict_mime_encoding_domain strict_smtputf8 syslog_facility
    syslog_name tcp_windowsize trace_service_name trigger_timeout
    verp_delimiter_filter
""".split())

BOUNCE_PARAMETERS = frozenset((
    "bounce_size_limit", "maximal_queue_lifetime", "delay_warning_time", "notify_classes",
    "bounce_notice_recipient", "2bounce_notice_recipient", "delay_notice_recipient",
    "bounce_template_file", "enable_threaded_bounces", "header_from_format",
    "config_directory", "process_name", "service_name", "process_id",
    "mail_version", "mail_release_date"))


def known_to_bounce(config, name):
    """True when Postfix's bounce would find name in its configuration dictionary."""
    return name in GLOBAL_PARAMETERS or name in BOUNCE_PARAMETERS \
        or name in config.explicit
