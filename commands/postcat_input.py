"""The input side of postcat(1): queue files opened the way Postfix's vstream does it
(regular files, pipes read whole, directories that fail at close) and the read errors
postcat reports for them.
"""

import errno
import os
import stat



class PipeReader:
    """Standard input that cannot seek: reads are counted so that tell() works until
    the first seek, which fails as lseek() does on a pipe."""

    def __init__(self, raw):
        self.raw = raw
        self.offset = 0
        self.seekable = False

    def read(self, size=-1):
        data = self.raw.read(size)
        self.offset += len(data)
        return data

    def tell(self):
        raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))

    def seek(self, offset, whence=0):
        raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))


class ReadErrors:
    """A stream whose read error ends the input, as VSTREAM_GETC() then returns EOF; the
    error is reported when the stream is closed (vstream_fclose() fails with it)."""

    def __init__(self, stream):
        self.stream = stream
        self.error = None

    def read(self, size=-1):
        if self.error is not None:
            return b""
        try:
            return self.stream.read(size)
        except OSError as exc:
            self.error = exc
            return b""

    def tell(self):
        return self.stream.tell()

    def seek(self, offset, whence=0):
        return self.stream.seek(offset, whence)

    def close(self):
        """None, or the read error to report."""
        self.stream.close()
        return self.error


class _Directory:
    """A directory opened for reading (open() allows it, every read() fails)."""

    def __init__(self, fd, closefd=True):
        self.fd = fd
        self.closefd = closefd

    def read(self, size=-1):
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))

    def tell(self):
        return os.lseek(self.fd, 0, os.SEEK_CUR)

    def seek(self, offset, whence=0):
        return os.lseek(self.fd, offset, whence)

    def close(self):
        if self.closefd:
            os.close(self.fd)


def fd_stream(fd, closefd=True):
    """A binary stream on fd, also when fd is a directory (Python's open() refuses
    those; Postfix opens them and fails to read)."""
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        return ReadErrors(_Directory(fd, closefd))
    try:
        os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return ReadErrors(PipeReader(open(fd, "rb", closefd=closefd)))
    return ReadErrors(open(fd, "rb", closefd=closefd))


def open_file(path):
    """vstream_fopen(path, O_RDONLY): a stream, or OSError."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return fd_stream(fd)
    except OSError:
        os.close(fd)
        raise
