"""The embedded demo corpus: English text that every CPython installation carries.

It is CPython's pydoc topic pages (`pydoc_data.topics`, the language reference in prose) followed by the docstrings
of a fixed list of standard-library modules and their public classes and functions. It is assembled
deterministically (sorted names, fixed module list), so every machine with the same Python builds the same corpus.

It exists so that `make demo` and the tests run with no download. It is a demo corpus, not a benchmark: numbers
trained on it are not comparable with anything published.
"""

import hashlib
import importlib
import inspect
import re
import warnings

# Modules that import without side effects on any platform and carry real prose in their docstrings.
DOC_MODULES = (
    "abc argparse ast asyncio base64 bisect calendar cmath codecs collections concurrent.futures configparser "
    "contextlib copy csv dataclasses datetime decimal difflib doctest email enum fnmatch fractions functools gc "
    "getopt gettext glob gzip hashlib heapq hmac html.parser http.client http.server imaplib inspect io ipaddress "
    "itertools json locale logging logging.handlers lzma mailbox math mimetypes multiprocessing numbers operator "
    "optparse os pathlib pdb pickle pkgutil platform poplib pprint queue random re reprlib sched secrets selectors "
    "shelve shlex shutil smtplib socket socketserver sqlite3 ssl statistics string struct subprocess tarfile "
    "tempfile textwrap threading timeit tokenize trace traceback types typing unittest urllib.parse "
    "urllib.request uuid warnings weakref xml.dom.minidom xml.etree.ElementTree zipfile"
).split()

MIN_DOC_CHARS = 200  # shorter docstrings are mostly signatures, not prose


def _clean(text: str) -> str:
    text = inspect.cleandoc(text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _module_docs(module_name: str):
    try:
        module = importlib.import_module(module_name)
    except ImportError:  # a platform without e.g. sqlite3: skip, the corpus stays deterministic per platform
        return
    if module.__doc__:
        yield _clean(module.__doc__)
    for name in sorted(vars(module)):
        if name.startswith("_"):
            continue
        member = getattr(module, name)
        if getattr(member, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(member) or inspect.isfunction(member):
            if member.__doc__:
                yield _clean(member.__doc__)
            if inspect.isclass(member):
                for attr in sorted(vars(member)):
                    method = vars(member)[attr]
                    if not attr.startswith("_") and inspect.isfunction(method) and method.__doc__:
                        yield _clean(method.__doc__)


def demo_documents() -> list[str]:
    """All documents of the demo corpus, in a fixed order, duplicates removed."""
    from pydoc_data.topics import topics

    docs = [topics[key].strip() for key in sorted(topics)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated aliases (typing.re, ...) warn when their docs are read
        for module_name in DOC_MODULES:
            docs.extend(_module_docs(module_name))
    seen, unique = set(), []
    for doc in docs:
        if len(doc) >= MIN_DOC_CHARS and doc not in seen:
            seen.add(doc)
            unique.append(doc)
    return unique


def is_validation_document(doc: str, percentage: int = 5) -> bool:
    """A stable split by content hash, so train and validation never share a document."""
    digest = int(hashlib.sha1(doc.encode("utf-8")).hexdigest()[:8], 16)
    return digest % 100 < percentage


def demo_splits(validation_percentage: int = 5) -> dict[str, list[str]]:
    docs = demo_documents()
    return {
        "train": [d for d in docs if not is_validation_document(d, validation_percentage)],
        "validation": [d for d in docs if is_validation_document(d, validation_percentage)],
    }
