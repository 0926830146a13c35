"""The SASL plug-in types pyfix implements: what `postconf -a` (server side) and
`postconf -A` (client side) list, and what smtpd_sasl_type / smtp_sasl_type accept
(Postfix's xsasl/xsasl_server.c and xsasl_client.c type tables)."""

SERVER_TYPES = ("dovecot",)     # daemons/smtpd/sasl.py
CLIENT_TYPES = ("cyrus",)       # daemons/smtp/smtp_sasl.py: its own PLAIN, LOGIN, CRAM-MD5
