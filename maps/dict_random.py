"""randmap: tables, a random pick from a list (Postfix's util/dict_random.c).

`randmap:{value1, value2, ...}` answers every key with one of the values, chosen at random
each time (for example to spread mail over several transports). Values are separated by
commas or whitespace outside braces; a value written in braces keeps its braces, as in
Postfix 3.7.
"""

import os
import random

from pyfix.common.strings import CHARS_BRACE, CHARS_COMMA_SP, balanced_length, tokens_quoted
from pyfix.maps import dict_file
from pyfix.maps.dict import FLAG_PATTERN, FLAG_SRC_RHS_IS_FILE, Dict, SurrogateDict

_random = random.SystemRandom()


class RandomDict(Dict):
    type = "randmap"

    def __init__(self, name, open_flags, dict_flags, replies):
        super().__init__(name, open_flags, dict_flags | FLAG_PATTERN)
        self.replies = replies
        self.owner_uid = 0

    def _lookup(self, key):
        return self.replies[_random.randrange(len(self.replies))]


def open_random(name, open_flags, dict_flags):
    if open_flags != os.O_RDONLY:
        return SurrogateDict("randmap", name, open_flags, dict_flags,
                             "randmap:%s map requires O_RDONLY access mode" % name)
    length = balanced_length(name, CHARS_BRACE)
    replies = []
    if length and length == len(name) and length > 2:
        for arg in tokens_quoted(name[1:-1], CHARS_COMMA_SP, CHARS_BRACE):
            if dict_flags & FLAG_SRC_RHS_IS_FILE:
                try:
                    arg = dict_file.file_to_b64(arg)
                except dict_file.DictFileError as exc:
                    return SurrogateDict("randmap", name, open_flags, dict_flags, str(exc))
            replies.append(arg)
    if not replies:
        return SurrogateDict("randmap", name, open_flags, dict_flags,
                             'bad syntax: "randmap:%s"; need "randmap:{value...}"' % name)
    return RandomDict(name, open_flags, dict_flags, replies)
