"""BDAT (RFC 3030 CHUNKING; Postfix's smtpd.c bdat_cmd and skip_bdat): the message in
chunks of exact byte counts, no dot-stuffing, split into queue-file records as it
arrives (a partial line waits for the next chunk, a line longer than line_length_limit
is cut into pieces); the last chunk (`BDAT n LAST`) ends the message like the lone dot.
"""

from pyfix.common import msg
from pyfix.queue import cleanup_user as cu
from pyfix.queue import record

from pyfix.daemons.smtpd import ehlo as E
from pyfix.daemons.smtpd.state import (
    BDAT_STAT_ERROR, BDAT_STAT_OK, SMTPD_AFTER_BDAT, SMTPD_AFTER_EOM)


class BdatCommands:
    """Mixed into SmtpdProtocol through TransactionCommands."""

    async def _skip_bdat(self, size, final, text):
        await self.chat.read_exact(size, lambda piece: None)
        await self.reply(text)
        if final:
            self.mail_reset()
            self.rcpt_reset()
        else:
            self.state.bdat_state = BDAT_STAT_ERROR
        return -1

    async def cmd_bdat(self, argv):
        state = self.state
        ctx = self.ctx
        if state.ehlo_discard_mask & E.MASK_CHUNKING:
            await self.reply("521 5.5.1 Error: command not implemented")
            return -1
        if not 2 <= len(argv) <= 3 or not argv[1].strval.isdigit() \
                or not argv[1].strval.isascii() \
                or (len(argv) == 3 and argv[2].strval.upper() != "LAST"):
            msg.warn("%s: malformed BDAT command syntax from %s: %.100s"
                     % (state.queue_id_or_noqueue(), state.namaddr,
                        msg.printable(self.buffer)))
            await self.reply("521 5.5.4 Syntax: BDAT count [LAST]")
            return -1
        size = int(argv[1].strval)
        final = len(argv) == 3
        if size == 0 and not final:
            msg.warn("%s: null BDAT request from %s"
                     % (state.queue_id_or_noqueue(), state.namaddr))
            return await self._skip_bdat(size, final, "551 5.7.1 Null BDAT request")
        if state.bdat_state == BDAT_STAT_ERROR:
            return await self._skip_bdat(size, final, "551 5.0.0 Discarded %d bytes after "
                                         "earlier error" % size)
        if not state.processing_bdat():
            if state.rcpt_count == 0:
                if not state.in_mail_transaction():
                    return await self._skip_bdat(size, final,
                                                 "503 5.5.1 Error: need RCPT command")
                return await self._skip_bdat(size, final,
                                             "554 5.5.1 Error: no valid recipients")
            err = await self.check_reply("data")
            if err is not None:
                return await self._skip_bdat(size, final, err)
        if ctx.message_limit > 0 and state.act_size > ctx.message_limit - size:
            msg.warn("%s: BDAT request from %s exceeds message size limit"
                     % (state.queue_id_or_noqueue(), state.namaddr))
            return await self._skip_bdat(size, final,
                                         "552 5.3.4 Chunk exceeds message size limit")
        if not state.processing_bdat():
            self.pre_message_handling()
            self.bdat_line = bytearray()
        state.bdat_state = BDAT_STAT_OK
        state.where = SMTPD_AFTER_BDAT
        await self.chat.read_exact(size, self._bdat_piece)
        if final:
            if self.bdat_line:
                self._bdat_record(record.NORM, bytes(self.bdat_line))
                self.bdat_line = bytearray()
            state.where = SMTPD_AFTER_EOM
            return await self.post_message_handling()
        if state.err:
            await self.post_message_handling()
            state.bdat_state = BDAT_STAT_ERROR
            return -1
        await self.reply("250 2.0.0 Ok: %d bytes" % size)
        return 0

    def _bdat_piece(self, piece):
        """Split chunk data into lines (records) as Postfix does; a partial line waits
        for the next chunk, a line longer than line_length_limit is cut into pieces."""
        buf = self.bdat_line
        buf += piece
        limit = self.ctx.line_limit
        while True:
            end = buf.find(b"\n")
            if end < 0 or end > limit:
                if len(buf) > limit:
                    self._bdat_record(record.CONT, bytes(buf[:limit]))
                    del buf[:limit]
                    continue
                return
            line = bytes(buf[:end])
            del buf[:end + 1]
            bare = 0
            if self.chat.detect_bare_lf:
                if line.endswith(b"\r"):
                    line = line[:-1]
                else:
                    bare = self.chat.detect_bare_lf
            else:
                line = line.rstrip(b"\r")
            if bare & self.ctx.BARE_LF_REPLY_REJECT:
                self.state.err |= cu.STAT_BARE_LF
            self._bdat_record(record.NORM, line)

    def _bdat_record(self, rec_type, line):
        self.content_record(rec_type, line)
