"""postfix(1): the Postfix control program, with what postfix-script and post-install do.

Postfix's postfix(1) sets up a clean environment and hands the command to the shell
scripts postfix-script and post-install; pyfix does all of it in Python (main.py for
postfix.c, control.py for start/stop/status..., check.py for check-fatal/check-warn,
postfix_files.py for post-install's create-missing/set-permissions).
"""
