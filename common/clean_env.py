"""The import_environment parameter: which environment a program keeps or sets.

Postfix's global/mail_parm_split.c and util/clean_env.c:
  - mail_parm_split() splits a list parameter on commas and white space, except inside
    `{...}`, and strips the braces (and the white space inside them) of an element that
    is entirely braced, so `{TZ=Europe/Berlin x}` is one element `TZ=Europe/Berlin x`;
  - clean_env() (postdrop, postqueue, the postfix command) keeps only the listed
    variables, as safe_getenv() sees them (nothing inherited when set-gid), and sets the
    `name=value` ones;
  - update_env() (postsuper, postcat, postmap, postalias, sendmail) only sets the
    `name=value` ones.
A `name=value` element is split by split_nameval(), so white space around `=` goes.
"""

import os
import time

from pyfix.common import msg
from pyfix.common.maillog import safe_getenv
from pyfix.common.strings import CHARS_BRACE, CHARS_COMMA_SP, extract_parens, split_nameval
from pyfix.common.strings import tokens_quoted

IMPORT_ENVIRONMENT = "import_environment"


def mail_parm_split(name, value):
    """A list parameter's elements; an element entirely in {} loses its braces."""
    out = []
    for word in tokens_quoted(value or "", CHARS_COMMA_SP, CHARS_BRACE):
        if word.startswith(CHARS_BRACE[0]):
            word, err = extract_parens(word, CHARS_BRACE, strip=True)
            if err:
                msg.fatal("%s: %s" % (name, err))
        out.append(word)
    return out


def import_env(config):
    """The elements of import_environment (main.cf or its default)."""
    return mail_parm_split(IMPORT_ENVIRONMENT, config.get(IMPORT_ENVIRONMENT))


def _name_value(element, who):
    name, value, err = split_nameval(element)
    if err:
        msg.fatal("%s: %s in: %s" % (who, err, element))
    return name, value


def clean_env(preserve_list):
    """Reduce the environment to the listed names and name=value settings."""
    keep = []
    for element in preserve_list:
        if "=" in element:
            keep.append(_name_value(element, "clean_env"))
        else:
            value = safe_getenv(element)
            if value is not None:
                keep.append((element, value))
    os.environ.clear()
    _setenv(keep)


def update_env(preserve_list):
    """Set the name=value settings of the list; leave the rest of the environment."""
    _setenv([_name_value(element, "update_env")
             for element in preserve_list if "=" in element])


def _setenv(pairs):
    for name, value in pairs:
        os.environ[name] = value
    # A new TZ must reach the C library's idea of local time (log and header dates).
    time.tzset()
