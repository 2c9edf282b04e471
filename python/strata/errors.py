"""Strata's errors as Python exceptions, with the field, value and rule of the message.

Strata's ConfigError (common/error.hpp) names what is wrong in one line, where json::fail's
form is "FIELD = VALUE: RULE", often after the file and the overrides it came from:

    /x/tiny-dp2.json with --set strategy.dp=-1: strategy.dp = -1: must be a positive integer

ConfigError.context is "/x/tiny-dp2.json with --set strategy.dp=-1", field "strategy.dp",
value -1 and rule "must be a positive integer". Messages of another form (a world size that
does not match, naming several fields) keep field and value None and the whole text as rule;
"FIELD: RULE" (an unknown key: "model.bogus: unknown key (known keys: ...)") gives the field
with value None.
"""

import json
import re

__all__ = ["ConfigError", "UsageError", "DoesNotFitError", "RuntimeFailure", "parse_message"]

# A field: spec keys joined by dots (strategy.layer_overrides.0.tp), list indices in brackets
# (space.schedule[0]), or a flag (--model).
_FIELD = re.compile(r"(?:^|: )((?:--)?[A-Za-z_][\w-]*(?:\.[\w-]+|\[\d+\])*) = ")
# A field of a spec without a value: "model.bogus: unknown key".
_SPEC_FIELD = re.compile(r"(?:^|: )((?:model|cluster|strategy)(?:\.[\w-]+)+): ")


def _value_end(text):
    """Where the value at the start of `text` ends: the first ": " outside quotes and brackets."""
    depth, quoted, escaped = 0, False, False
    for i, c in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif depth <= 0 and text.startswith(": ", i):
            return i
    return -1


def parse_message(message):
    """(context, field, value, rule) of a Strata error message; field and value None when the
    message names no field ("FIELD = VALUE: RULE", or "FIELD: RULE" with value None). The value
    is read as JSON where it is (Strata shows it as JSON, long ones cut short with "..."), else
    kept as its text."""
    for match in _FIELD.finditer(message):
        rest = message[match.end():]
        end = _value_end(rest)
        if end < 0:
            continue
        text = rest[:end]
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        context = message[:match.start()]
        return context, match.group(1), value, rest[end + 2:]
    match = _SPEC_FIELD.search(message)
    if match:
        return message[:match.start()], match.group(1), None, message[match.end():]
    return "", None, None, message


class ConfigError(ValueError):
    """Bad input: a spec, an override, a spec name or path. Attributes: message, context (the
    file and overrides it came from, or ""), field, value, rule."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message
        self.context, self.field, self.value, self.rule = parse_message(message)


class UsageError(ConfigError):
    """A malformed call: an argument of the wrong type or range (the command line's exit 2)."""


class DoesNotFitError(ConfigError):
    """The strategy needs more device memory than a rank has; the message gives the numbers
    (simulate(..., ignore_memory=True) simulates it anyway)."""


class RuntimeFailure(RuntimeError):
    """Valid input, but the work failed: the simulation's child process failed, was killed or
    timed out (the command line's exit 4, or an internal error)."""
