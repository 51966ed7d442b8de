"""The data-flow policy: side-effecting calls whose control arguments came from untrusted data.

CaMeL's idea (capabilities on values), applied in the agent loop without a second model:
each agent step keeps a ledger of where text came from, and before a side-effecting tool
call runs, the values in its *control* arguments — recipients, URLs and hosts, amounts,
IBANs and account numbers, file paths — are traced back to it.

- Trusted sources: the user's request (the run input, and the step's prompt as the spec
  renders it), the agent's system prompt, and the outputs of tools named in
  `dataflow_trusted_tools` (e.g. the user's own address book).
- Untrusted sources: every other tool output the step has read, and the outputs of earlier
  steps when the step's prompt template pulls them in (`{{ steps.… }}`). Earlier steps are
  not tracked value by value: whatever they produced counts as untrusted (an
  over-approximation; their values that also appear in the run input stay trusted).
- Once a step has read any untrusted text, the model's choices are tainted: a control
  value passes only when it is one of the values of a trusted source. Whole values are
  compared, never substrings: emails (case-insensitive), IBANs (spacing ignored) and
  absolute paths (normalised: `/a/./b` = `/a/b`) must equal one found in the source; a URL
  needs a trusted URL with the same scheme, host and port whose path is the candidate's path
  or lies below it on a `/` boundary (`https://corp.com` and `https://corp.com/reports/` for
  `https://corp.com/reports`, not `https://corp.com/rep` nor `…/reports/x`; a query only as
  written, on the same path). An amount written out is read as one number (spaces removed)
  and every reading of it must be trusted (`50.000` is 50 or 50000, so "50" in the request is
  not enough); a JSON number is exactly its value. Other numbers (accounts, phones) are
  compared as digit strings (`0012345678` is not `12345678`). Plain text matches on word
  boundaries, and never when shorter than 3 characters. A recipient copied from a document —
  or composed after reading one — and absent from the request is untrusted-derived. Before
  any untrusted text is read, nothing is checked.
- Control values: in arguments named as control (SENSITIVE_WORDS: `to`, `email`, `contact`,
  `url`, `server`, `host`, `target`, `amount`, `account`, `path`, … and `dataflow_arguments`)
  every email, URL and IBAN, else the whole value; in any other string argument every email
  and URL in it; in free text (FREE_TEXT_WORDS: subject, body, …) only a whole value that is
  an email, URL, IBAN or absolute path — free text is data. Money has more names: an amount
  under `fee`/`cost` (FEE_WORDS) or a `value` beside a currency, a currency under `asset`,
  `coin`, `unit` (SOFT_CURRENCY_WORDS) when it is one, minor units by name (MINOR_WORDS) or by
  the tool (`dataflow_minor_unit_tools`), and an amount object's `exponent` or `scale`.
- Side-effecting tools: every tool except those its server marks read-only (MCP's
  `readOnlyHint`, `ToolSpec.read_only`) when that hint can be trusted (`ToolSpec.trusted_hint`:
  a server an instance operator installed — stdio, or from the catalogue — not a remote
  server a team added), plus the tools named in `dataflow_tools` even if read-only. So a
  trusted read-only fetch of a URL from a document is not held back: list such fetch-like
  tools in `dataflow_tools` to check them.

The decision derives from what the run persists (the run input, the pipeline version's
template, earlier steps' outputs and this attempt's ledger of tool results, replayed in order
on resume) and from the agent's settings (system prompt, defences) and the tools' specs as
they are when the step runs: agents are read live, so a resumed run decides the same unless
the agent or its tools were edited in between. A call a crash interrupted is never refused
on resume (it may have run); it is made again only as the interrupted-call rules say, with
a human's approval when the policy would now refuse it.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal, DecimalException
from typing import Any
from urllib.parse import SplitResult, urlsplit

MODES = ("off", "confirm", "refuse")

# Argument names (split into words) that steer where an action goes or how much it moves.
SENSITIVE_WORDS = frozenset({
    "to", "cc", "bcc", "recipient", "recipients", "address", "addresses", "phone",
    "email", "emails", "mail", "mails", "contact", "contacts",
    "url", "urls", "uri", "link", "endpoint", "endpoints", "webhook", "webhooks", "host", "hosts",
    "hostname", "domain", "domains", "server", "servers", "target", "targets", "site", "sites",
    "iban", "bic", "swift", "account", "accounts", "routing", "payee", "beneficiary",
    "amount", "amounts", "sum", "total", "price", "quantity", "currency", "currencies", "ccy",
    "path", "paths", "filename", "filenames", "filepath", "filepaths", "file", "files", "directory", "dir", "folder",
    "destination", "dest", "source", "src", "receiver", "receivers", "wallet", "wallets", "mobile", "msisdn", "fax",
    # where a message, an issue or a file goes in chat, code and storage tools (Slack's `channel`,
    # GitHub's `owner`/`repo`: an issue in the attacker's repository is a leak; found by a review)
    "channel", "channels", "chat", "chats", "conversation", "room", "rooms", "owner", "repo", "repos", "repository",
    "repositories", "bucket", "buckets", "proxy", "remote", "remotes", "user", "users", "username", "usernames",
    "assignee", "assignees", "invitee", "invitees", "member", "members",
})
# Control arguments that hold an amount: compared by value. Other numbers (accounts, phones)
# are compared as digit strings ("0012345678" is not "12345678").
AMOUNT_WORDS = frozenset({"amount", "amounts", "sum", "total", "price", "quantity"})
# ... of those, the ones that are money (a `quantity` is a count: no currency goes with it)
MONEY_WORDS = AMOUNT_WORDS - {"quantity"}
# Money too when a name ends with one (`fee`, `shipping_cost`, `totalFee`; not `cost_center`).
FEE_WORDS = frozenset({"fee", "fees", "cost", "costs"})
# Control arguments that hold a currency: compared as a currency the request names.
CURRENCY_WORDS = frozenset({"currency", "currencies", "ccy"})
# A currency when the value is one (`asset: "BTC"`, `unit: "USDC"`), else data (`unit: "pcs"`,
# `asset: "logo.png"`): an attacker's asset passed under these names (found by a review).
SOFT_CURRENCY_WORDS = frozenset({"asset", "assets", "coin", "coins", "cur", "unit", "denomination", "denom"})
# An amount under a name of these words is in its currency's minor units (`amount_cents`,
# `amountInCents`, `minor_units`): 5000 of them are 50 EUR, 5000 JPY, 5 KWD.
MINOR_WORDS = frozenset({"cent", "cents", "minor", "pence", "penny", "subunit", "subunits"})
MINOR_DIGITS = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "UGX": 0, "XAF": 0, "XOF": 0, "PYG": 0, "RWF": 0,
                "XPF": 0, "BIF": 0, "DJF": 0, "GNF": 0, "KMF": 0, "VUV": 0, "MGA": 0,
                "KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3, "TND": 3, "IQD": 3, "LYD": 3}  # (others: 2)
# An integer under one of these in an amount object scales it (`{"value": 50, "exponent": 3}`
# is 50,000, or 0.05 where it counts decimals): every reading must be the request's.
SCALE_WORDS = frozenset({"exponent", "scale"})
# `value` is an amount in an object that gives a currency (`{"value": "50.00", "currency_code":
# "EUR"}`, PayPal's shape); elsewhere it is too generic to be control (`set_field(value=…)`).
VALUE_WORDS = frozenset({"value", "values"})
# A recipient object's name beside its address is data (`{"address": …, "name": "Bob Smith"}`):
# mail goes to the address; a name alone is still checked.
NAME_WORDS = frozenset({"name", "display", "full", "first", "last", "given", "family"})
ADDRESS_WORDS = frozenset({"address", "email", "mail", "addr"})
# Words of an argument's name that are a currency (`amount_eur`, `EURAmount`); not `try`.
NAME_CODES = frozenset({"eur", "usd", "gbp", "chf", "jpy", "cad", "aud", "nzd", "sek", "nok", "dkk", "pln", "czk",
                        "huf", "ron", "inr", "cny", "hkd", "sgd", "krw", "mxn", "brl", "zar", "ils", "aed", "sar",
                        "rub", "btc", "eth", "usdt", "usdc"})
# Control arguments that hold a file path: a relative one must be a whole path the request
# wrote, never a piece of one (`finance` out of `/finance/q3-draft.xlsx`).
PATH_WORDS = frozenset({"path", "paths", "filename", "filenames", "filepath", "filepaths", "file", "files",
                        "directory", "dir", "folder"})
# Free text: data, not control. Only a whole value that *is* an email, URL, IBAN or path is
# checked in them. A free-text name wins over a control name unless the name ends with the
# control word: `email_body` is free text, `reply_to` and `comment_url` are control.
FREE_TEXT_WORDS = frozenset({
    "body", "subject", "text", "content", "contents", "message", "html", "markdown", "description",
    "summary", "comment", "comments", "title", "note", "notes", "caption", "reply", "prompt",
})
SHORT = 3  # a plain-text control value shorter than this is never taken as coming from a source

# (Patterns that scan a run of characters start only where the run starts, by a lookbehind:
# tried at every character of a crafted 100 KB text they were quadratic — seconds to minutes
# on the event loop, found by a review.)
EMAIL = re.compile(r"(?<![\w.+'-])[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_SCHEME = r"(?<![\w+.-])[a-z][a-z0-9+.-]*://"
# A URL of any scheme (`s3://`, `wss://`, `postgres://`), up to a character that closes it in
# prose, an IPv6 host kept whole (`http://[2001:db8::1]/hook`).
URL = re.compile(_SCHEME + r"(?:\[[0-9a-f:.]+\])?[^\s\"'<>)\]`\u201d\u2019\u00bb}]*", re.IGNORECASE)
# A URL in a call's arguments: the whole token up to whitespace, whatever the scheme. The
# characters URL stops at may sit inside what a client parses as the authority
# (`https://corp.com)@evil.test/` goes to evil.test), so a candidate is never cut there.
# (Found by `_url_tokens`.)
# Anything with an `@` between non-separators once the addresses EMAIL recognises are taken
# out: a mail stack may read it as a recipient (`"bob@corp.com"@evil.test`, `ops~@evil.test`,
# `ops@[203.0.113.7]`), so it must be a trusted address itself.
LOOSE_ADDRESS = re.compile(r"(?<![^\s,;<>])[^\s,;<>]*@[^\s,;<>]+")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b")
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,']\d+)*")
PATH = re.compile(r"^(?:~?/|[A-Za-z]:\\)\S*$")
PATHS_IN = re.compile(r"(?<![\w/.:~\\-])(?:~?/|[A-Za-z]:\\)[^\s\"'<>|)\]`]*")
DIGIT_RUN = re.compile(r"(?<![\w.,])\+?\(?\d+\)?(?:[ .\-/]\(?\d+\)?)*(?![\w])")
SPACED_NUMBER = re.compile(r"(?<![\w.,])\d{1,3}(?: \d{3})+(?:[.,]\d+)?(?![\w])")
TRAILING = ".,;:!?*'\"`"  # (Markdown's `**` and backticks, and closing quotes, end a value too)
URL_CLOSERS = TRAILING + ")]>}\u201d\u2019\u00bb\u203a"  # (what may close a URL token: a bracket, a JSON string's `"}`, a quote)
# Currencies a request can name: symbols, common ISO codes, and a few names.
CURRENCY_NAMES = {"€": "EUR", "$": "USD", "£": "GBP", "¥": "JPY", "euro": "EUR", "euros": "EUR", "dollar": "USD",
                  "dollars": "USD", "pound": "GBP", "pounds": "GBP", "franc": "CHF", "francs": "CHF"}
CURRENCY_NAMES.update({"yen": "JPY", "us$": "USD", "c$": "CAD", "ca$": "CAD", "a$": "AUD", "au$": "AUD", "nz$": "NZD",
                       "hk$": "HKD", "s$": "SGD"})
CURRENCY_CODES = frozenset({
    "EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "RON", "INR",
    "CNY", "HKD", "SGD", "KRW", "MXN", "BRL", "ZAR", "TRY", "ILS", "AED", "SAR", "RUB", "BTC", "ETH", "USDT", "USDC"})
LONG_CODES = frozenset({"USDT", "USDC", "WBTC", "DOGE", "SHIB", "BUSD"})  # codes of four letters (a code is otherwise any three)
# ISO 4217's codes and common crypto-assets: a key written so is a currency anywhere
# (`{"payouts": {"KWD": {…}}}`), and so is a value under a name of SOFT_CURRENCY_WORDS.
MONEY_CODES = frozenset("""
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF
    CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG
    HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA
    MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD
    RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH
    UGX USD UYU UZS VES VND VUV WST XAF XAG XAU XCD XDR XOF XPF YER ZAR ZMW ZWL
    BTC XBT ETH LTC XRP SOL ADA DOT BNB DAI XMR USDT USDC WBTC DOGE SHIB BUSD""".split())
# ... of those, the ones that are English words too: not a currency as a key in lower case
WORD_CODES = frozenset({"ALL", "TOP", "CUP", "TRY", "MAD", "PEN", "BOB", "COP", "GEL", "SOS", "MOP", "PHP", "RON",
                        "DOT", "SOL", "DAI", "BAM", "ERN", "DOP", "LAK", "MNT", "ADA", "RUB", "AMD", "BIF", "ANG"})
# ... of those, the ones an asset's name takes as words (`asset: "all"`, `pen`, `cup`): not the
# crypto-assets and currencies that are words too (`sol`, `ada`, `dot`, `dai`, `rub` are money
# there: a review of the first version found `asset: "sol"` let through).
ASSET_WORDS = WORD_CODES - {"SOL", "ADA", "DOT", "DAI", "RUB"}
# An asset's symbol the codes do not know, with a capital or a digit in it (`PEPE`, `Pepe`,
# `stETH`, `1INCH`, `USDC.e`): a lower-case word is data (`pen`, and so `pepe` too).
TICKER = re.compile(r"(?=[^A-Z0-9]*[A-Z0-9])[A-Za-z0-9]{2,10}(?:\.[A-Za-z])?")
# A currency mark next to a number: a symbol (`US$`, `C$` too), a code (USDC of four letters),
# a currency's name ("50 Euro").
_MARK = (r"(?:US|CA|C|AU|A|NZ|HK|S)\$|[€$£¥]|(?:USD[CT]|WBTC|DOGE|SHIB|BUSD)(?![A-Za-z])|[A-Za-z]{3}(?![A-Za-z])"
         r"|(?i:euros?|dollars?|pounds?|francs?|yen)")
MARK_BEFORE = re.compile(rf"(?:^|(?<![A-Za-z]))({_MARK})\s?$")  # (matched on the few characters before a number)
MARK_AFTER = re.compile(rf"^(?:[.,]-{{1,2}})?\s?({_MARK})(?![A-Za-z])")  # (and after it; `50.- CHF`, `50,- EUR`)
# Thousands and millions after a number that has a currency (`1.5k EUR`, `€2m`; "5m" alone is
# no money).
MULTIPLIER = re.compile(r"(k|K|m|M|mn|bn)(?![A-Za-z])")
MULTIPLIES = {"k": 3, "K": 3, "m": 6, "M": 6, "mn": 6, "bn": 9}
STEP_REF = re.compile(r"\{\{\s*steps\.")
TOKEN = re.compile(r"[^\s\"'<>|`]+")
# A span the text quotes: a file name with a space in it is a whole value there.
QUOTED = re.compile(r'"([^"\n]{1,300})"|`([^`\n]{1,300})`|\u201c([^\u201d\n]{1,300})\u201d'
                    r'|\u2018([^\u2019\n]{1,300})\u2019|\u00ab([^\u00bb\n]{1,300})\u00bb'
                    r"|(?<!\w)'([^'\n]{1,300})'(?!\w)")
WRAPPERS = "*_()[]{}<>\u201c\u201d\u2018\u2019\u00ab\u00bb\"'`.,;:!?"  # (what surrounds a value in prose: `**x**`, `(tmp)`, `“x”.`)
OPENERS = "*([{<\u201c\u2018\u00ab\"'`"  # (before a path: not a dot or an underscore, which begin names)
CLOSERS = "*)]}>\u201d\u2019\u00bb\"'`.,;:!?"
BARE_PATHS = frozenset({"/", ".", "..", "~"})  # (never a value to take from prose: "Q3 / Q4")
GLUED_CODE = re.compile(r"(?<![A-Za-z])([A-Z]{3})(?=\d)")  # `EUR50`: a code glued to its amount
ID_MARK = re.compile(r"(?:#|[A-Za-z]-)\Z")  # (what comes just before an id's digits: `#4471`, `INV-4471`)
# ... or the words that name an account or an id: "account 12345678", "routing 021000021"
ACCOUNT_MARK = re.compile(r"(?:account|acct|routing|sort code|konto|number|no\.?|nr\.?|ref\.?)\s*[:#]?\s*\Z", re.IGNORECASE)

REFUSAL = "Tool call refused: data-flow policy. {reason}. Use only values from the user's request for this."


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _compact(text: str) -> str:
    return "".join(text.lower().split())


def readings(raw: str) -> set[Decimal]:
    """The values one written number can mean: "4,900" is 4900 or 4.9, "50.000" is 50 or
    50000, "4900.00" only 4900 (a thousands separator needs groups of three digits)."""
    raw = raw.replace("'", "")
    found: set[Decimal] = set()
    for decimal, thousands in ((".", ","), (",", ".")):
        parts = raw.split(decimal)
        if len(parts) > 2:
            continue
        groups = parts[0].split(thousands)
        if len(groups) > 1 and not (1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])):
            continue
        try:
            found.add(Decimal("".join(groups) + ("." + parts[1] if len(parts) == 2 else "")).normalize())
        except DecimalException:  # (a run of a million digits overflows)
            continue
    return found


def numbers_in(text: str) -> set[Decimal]:
    """Every number in the text, by every value it can mean ("4,900" and "4900.00" share 4900);
    "1 000 000" is also read as one number."""
    found: set[Decimal] = set()
    for match in NUMBER.finditer(text):
        found |= readings(match.group(0))
    for match in SPACED_NUMBER.finditer(text):
        found |= readings(match.group(0).replace(" ", ""))
    return found


def amounts_in(text: str) -> frozenset[Decimal]:
    """The numbers of a text that can be an amount: not the digits of an IBAN, an address, a URL
    or a path, nor a group of a phone number, a date or another run of digit groups
    (`DE89 3704 …`, `(555) 123-4567`, `2026-12-01`), nor an id (`#4471`, `INV-4471`,
    "account 12345678", "invoice number 4471"). A code
    glued to its amount (`EUR50`) counts. Linear in the text (a source is scanned once per
    distinct text: cached)."""
    return frozenset(value for value, _ in money_in(text))


def money_in(text: str) -> frozenset[tuple[Decimal, str | None]]:
    """Each amount of a text (see `amounts_in`) with the currency written next to it, or None:
    "50 EUR … 5000 JPY" holds (50, EUR) and (5000, JPY), so "5000 EUR" is not the request's
    (an amount and a currency checked apart let it through, found by a review)."""
    text = _blank_ibans(GLUED_CODE.sub(r"\1 ", text))
    for pattern in (EMAIL, URL, PATHS_IN):
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    in_run = bytearray(len(text) + 1)
    for match in DIGIT_RUN.finditer(text):
        if _id_like(match.group(0)):
            in_run[match.start():match.end()] = b"\x01" * (match.end() - match.start())
    numbers: list[tuple[int, int, set[Decimal]]] = []
    for match in NUMBER.finditer(text):
        start = match.start()
        if in_run[start] or ID_MARK.search(text[max(0, start - 2):start]) or ACCOUNT_MARK.search(text[max(0, start - 14):start]):
            continue
        values, end = readings(match.group(0)), match.end()
        multiplied = MULTIPLIER.match(text, end)
        if multiplied is not None and _marks_around(text, start, multiplied.end()):  # `1.5k EUR`, `€2m`
            values, end = {v.scaleb(MULTIPLIES[multiplied.group(1)]).normalize() for v in values}, multiplied.end()
        numbers.append((start, end, values))
    for match in SPACED_NUMBER.finditer(text):
        if not in_run[match.start()]:
            numbers.append((match.start(), match.end(), readings(match.group(0).replace(" ", ""))))
    numbers.sort(key=lambda n: n[0])
    # A list of amounts shares the currency written with one of them ("Bob 30, Alice 50 and
    # Carol 70 EUR" is 30 EUR too, "Bob 30 EUR, Alice 50"), when it writes exactly one (two
    # gave a bare amount both, and a crafted list every code times every number: found by a
    # review); a number outside such a list, or naming an invoice, order or year, has only its
    # own ("invoice 12000, 50 EUR" is no request for 12000 EUR).
    found: set[tuple[Decimal, str | None]] = set()
    chain: list[tuple[set[Decimal], set[str]]] = []
    previous_end = -1
    for start, end, values in numbers:
        noun = ID_NOUN.search(text, max(0, start - 24), start)
        listed = noun is None
        if chain and not (listed and previous_end <= start and LIST_GAP.fullmatch(text, previous_end, start)):
            _add_chain(found, chain)
            chain = []
        marks = _marks_around(text, start, end)
        if (not listed and not marks and text[start:end].isdigit() and end - start >= 4
                and not _a_verb(text, noun)):  # (a verb's number counts, alone: "Order 1000 flyers")
            previous_end = end  # an id ("invoice 98000", "customer 88123"): no amount at all ("Order 3 chairs" is one)
            continue
        chain.append((values, marks))
        if not listed:
            _add_chain(found, chain)
            chain = []
        previous_end = end
    _add_chain(found, chain)
    return frozenset(found)


# A number of four digits or more an id noun names is no amount, unless a currency is written
# with it ("bill 5000 EUR"; a short one may be a count: "Order 3 chairs"), and no number an id
# noun names is one of a list: "invoice 12000", "order 4471", "customer 88123", "year 2026" (after a
# payment, "Pay 50 EUR, customer 88123" gave 88123 EUR; found by a review).
ID_NOUN = re.compile(r"(?i:\b(?:invoice|order|ticket|case|po|year|bill|contract|item|sku|room|page|version|"
                     r"reference|ref|id|no|nr|number|customer|client|member|employee|user|account|acct|code|pin|"
                     r"zip|postcode|phone|tel|ext|batch|lot|serial|tracking|booking|reservation|flight|patient|"
                     r"student|project|request|claim|policy|loan|shipment|parcel)\b)\.?[^\S\n]{0,3}[:#]?[^\S\n]{0,3}\Z")


# What stands between two amounts of one list: the first one's currency, up to two words, a
# comma or a conjunction, and up to two words (a payee's name): ", Alice ", " and Carol ",
# " EUR, Alice ", " EUR to Bob and ". Bounded, so a match is linear.
_CONJUNCTION = r"(?:,[^\S\n]{0,3}(?:(?:and|or|und|et|y|e|&)[^\S\n]{1,3})?|(?:and|or|und|et|y|e|&)[^\S\n]{1,3})"
_PAYEE = (r"(?:(?!(?i:in|on|by|at|until|till|within|before|after|since|for|from|of|during)[^\w])"
          r"[^\W\d_]{1,40}[^\S\n]{1,3}){0,2}")  # (a name, not "in" 2026: found by a review)
LIST_GAP = re.compile(r"[^\S\n]{0,3}(?:(?:[€$£¥]|[A-Z]{3}|(?i:euros?|dollars?|pounds?|francs?))[^\S\n]{0,3})?"
                      + _PAYEE + _CONJUNCTION + _PAYEE + r"[€$£¥]?[^\S\n]?")


# Id nouns that are verbs too: at the start of a sentence, one may be a verb ("Order 1000
# flyers", "Request 1500 from Alice"; refused as ids, found by a review), so its number is an
# amount — but of its own, in no list and with no currency but its own ("Order 98000, 120
# EUR, …" gave 98000 EUR: a second review).
VERB_NOUNS = frozenset({"order", "request", "claim", "bill"})
_SENTENCE_START = re.compile(r"(?:\A|[.!?:;]|\n)[\s*_>\-\u2022]*\Z")


def _a_verb(text: str, noun: re.Match[str]) -> bool:
    word = noun.group(0).split()[0].strip(".:#").lower() if noun.group(0).split() else ""
    return word in VERB_NOUNS and _SENTENCE_START.search(text, max(0, noun.start() - 8), noun.start()) is not None


def _add_chain(found: set[tuple[Decimal, str | None]], chain: list[tuple[set[Decimal], set[str]]]) -> None:
    shared = set().union(*(codes for _, codes in chain)) if len(chain) > 1 else set()
    for values, codes in chain:
        for code in (codes or (shared if len(shared) == 1 else {None})):
            found.update((value, code) for value in values)


def _marks_around(text: str, start: int, end: int) -> set[str]:
    """The currencies written just before or after the number at `text[start:end]`."""
    found = set()
    for mark in (MARK_BEFORE.search(text[max(0, start - 9):start]), MARK_AFTER.search(text[end:end + 9])):
        if mark is not None:
            code = _named_currency(mark.group(1))
            if code is not None:
                found.add(code)
    return found


def _named_currency(word: str) -> str | None:
    """The currency a mark next to a number names: a code in capitals, or in lower case when it
    is a common one (`eur`; not `try`), a symbol or a currency's name."""
    code = currency_of(word)
    if code is not None and (word.isupper() or not word.isalpha() or word.lower() in CURRENCY_NAMES
                             or (word.upper() in COMMON_LOWER_CODES and word.islower())):
        return code
    return None


def _id_like(run: str) -> bool:
    """Whether a run of digit groups is a phone number, a date or an id rather than numbers:
    three groups or more (`+1 555 999 0000`), groups joined by `-` or `/` (`2026-12-01`), or a
    bracketed area code (`(555) 123`); not a number written with thousands (`1 000 000`)."""
    bare = run.strip("()+")
    if NUMBER.fullmatch(bare) or SPACED_NUMBER.fullmatch(bare):
        return False
    return (len(re.findall(r"\d+", run)) >= 3 or re.search(r"\d\)?[-/]\(?\d", run) is not None
            or re.match(r"\+?\(\d+\)\s*\d", run) is not None)


def _blank_ibans(text: str) -> str:
    if not IBAN.search(text.upper()):
        return text
    chars = list(text)
    for match in IBAN.finditer(text.upper()):
        chars[match.start():match.end()] = " " * (match.end() - match.start())
    return "".join(chars)


def digits_in(text: str) -> set[str]:
    """Every digit string in the text: each number as written, and runs of digit groups
    ("0012 3456 78", "12-34") joined, leading zeros kept."""
    found: set[str] = set()
    for match in DIGIT_RUN.finditer(text):
        run = match.group(0).lstrip("+")
        found.add(re.sub(r"\D", "", run))
        found.update(re.findall(r"\d+", run))
    return found


def _digits(value: str) -> str:
    """The digit string of an account-like value, or "" when it holds more than digits and separators."""
    bare = re.sub(r"[\s\-./()]", "", value).removeprefix("+")
    return bare if bare.isdigit() else ""


def _words(name: str) -> list[str]:
    """An argument name's words, in order: `reply_to`, `replyTo`, `EURAmount`, `SMSTo`."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def currency_of(value: str) -> str | None:
    """The currency a mark names (`€`, `eur`, `EUR`, `euros`: EUR; `XBT`: XBT, an unknown code
    is its own currency), or None when it is not one (a word longer than a code)."""
    bare = value.strip()
    named = CURRENCY_NAMES.get(bare.lower())
    if named is not None:
        return named
    if bare.upper() in LONG_CODES:
        return bare.upper()
    return bare.upper() if len(bare) == 3 and bare.isalpha() and bare.isascii() else None


def money_code(value: str, *, any_case: bool = False) -> str | None:
    """The currency a value under an asset's or a unit's name is, when it is one: a symbol, a
    currency's name, or a code of MONEY_CODES in capitals (or a common one in lower case; any
    one in lower case with `any_case`, under an asset's name: `eth`) — not any three letters
    (`pcs`, `all`)."""
    bare = value.strip()
    named = CURRENCY_NAMES.get(bare.lower())
    if named is not None:
        return named
    code = bare.upper()
    if code in MONEY_CODES and (bare.isupper() or code in COMMON_LOWER_CODES or code in LONG_CODES
                                or (any_case and code not in ASSET_WORDS)):
        return code
    return None


# A fee the request writes: "a 2.50 fee", "2.50 shipping fee", "fee of 2.50", "shipping cost is 4.99".
_FEE_NUMBER = r"(?<![\w.,])(\d+(?:[.,']\d+)*)"
FEE_BEFORE = re.compile(r"(?i:\b(?:fees?|costs?|charges?)\b)[^\S\n]{0,3}(?:(?:is|are|of|at|:|=)[^\S\n]{0,3})?"
                        r"(?:[€$£¥][^\S\n]?)?" + _FEE_NUMBER)
FEE_AFTER = re.compile(_FEE_NUMBER + r"[^\S\n]{0,3}(?:[€$£¥][^\S\n]{0,3})?([A-Za-z-]{1,20}[^\S\n]{1,3})?"
                                    r"(?i:fee|cost|charge)(?![\w-])")


def fees_in(text: str) -> frozenset[Decimal]:
    """The numbers a text writes as a fee or a cost (see FEE_BEFORE, FEE_AFTER): "a 2.50 fee",
    "the 5 delivery fee", but not a year before it ("the 2026 fee", "the 2026 membership fee"),
    a whole number of four digits or more with a word before the fee, which qualifies it, nor
    "1000 transaction fees" (a count)."""
    found: set[Decimal] = set()
    for match in FEE_BEFORE.finditer(text):
        found |= readings(match.group(1))
    for match in FEE_AFTER.finditer(text):
        number = match.group(1)
        if number.isdigit() and (YEAR.fullmatch(number) or (match.group(2) is not None and len(number) >= 4)):
            continue  # "the 2026 fee", "the 2026 membership fee", "1000 transaction fee"; not "the 5 delivery fee"
        found |= readings(number)
    return frozenset(found)


YEAR = re.compile(r"(?:19|20)\d\d")


def marked_currencies_in(text: str) -> frozenset[str]:
    """The currencies a text writes next to an amount (not a conversion's target)."""
    return currencies_in(text, targets=False)


def currencies_in(text: str, *, targets: bool = True) -> frozenset[str]:
    """The currencies a text gives an amount in: a symbol, name or code written next to a
    number (`50 EUR`, `€50`, `EUR50`, `50 euros`). A code counts in capitals, or in lower case
    when it is a common one (`eur`; not `try`). A code elsewhere is a word, not a currency the
    user named: "ETH Zurich" let `50 ETH` through (found by a review)."""
    text = GLUED_CODE.sub(r"\1 ", text)
    found: set[str] = set()
    for match in NUMBER.finditer(text):
        found |= _marks_around(text, *match.span())
        multiplied = MULTIPLIER.match(text, match.end())
        if multiplied is not None:  # `1.5k EUR`
            found |= _marks_around(text, match.start(), multiplied.end())
    if found and targets:  # a conversion's target, in a text that gives an amount: "Convert 100 EUR to USD", "… into dollars"
        for target in TARGET_CODE.finditer(text):
            code = target.group(1) if target.group(1) in CURRENCY_CODES else CURRENCY_NAMES.get(target.group(1).lower())
            if code is not None:
                found.add(code)
    return frozenset(found)


TARGET_CODE = re.compile(r"(?<![A-Za-z])(?:to|into)\s+([A-Z]{3,4}|euros|dollars|pounds|francs|yen)(?![A-Za-z])")


_LEAD_MARK = re.compile(r"((?:US|CA|C|AU|A|NZ|HK|S)\$|[€$£¥]|(?:USD[CT]|WBTC|DOGE|SHIB|BUSD)(?![A-Za-z])|[A-Za-z]{3}(?![A-Za-z])"
                        r"|(?i:euros?|dollars?|yen)(?![A-Za-z]))\s*")
COMMON_LOWER_CODES = frozenset({"EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD", "SEK", "NOK", "DKK", "PLN", "CZK", "INR", "CNY",
                                "BTC", "ETH", "LTC", "XRP", "SOL", "ADA", "DOT", "DAI"})


def split_money(value: str) -> tuple[str, list[str]]:
    """An amount as written, without its currency marks (a symbol, a code or a currency's name,
    before or after it), and those marks. Nothing else goes: any letters used to, so `50k`,
    `50M`, `50 million EUR` and `50 thousand` passed as the request's "50" (found by a review). Done by hand, not by a pattern anchored at the end,
    which backtracked over every blank of `5` + 100,000 spaces + `0` (ten minutes)."""
    text, marks = value.strip(), []
    lead = _LEAD_MARK.match(text)
    if lead is not None:
        marks.append(lead.group(1))
        text = text[lead.end():]
    text = text.rstrip()
    if text and text[-1] in "€$£¥":
        marks.append(text[-1])
        text = text[:-1].rstrip()
    else:
        cut = len(text)
        while cut > 0 and text[cut - 1].isalpha():
            cut -= 1
        word = text[cut:]
        if word and cut > 0 and (currency_of(word) is not None):
            marks.append(word)
            text = text[:cut].rstrip()
    return text, marks


@dataclass(frozen=True, slots=True)
class Candidate:
    """One control value found in a call's arguments."""

    argument: str  # where it sits, e.g. `to` or `recipients[1]`
    value: str
    kind: str  # email, url, iban, number, digits, path, text
    exact: bool = False  # a JSON number (exactly this value), not one written out in a string
    # An amount's currency given apart from it — an argument of its own (`{"amount": 50,
    # "currency": "EUR"}`), a key (`{"amount": {"EUR": 50}}`), a name (`amount_eur`): the
    # codes it may be in (it must be one of them, written with it by the source).
    currencies: tuple[str, ...] = ()
    money: bool = False  # an amount of money (`amount`, `price`, …), not a count (`quantity`)
    minor: bool = False  # in its currency's minor units (`amount_cents`; see MINOR_WORDS)
    loose: bool = False  # a fee: a bare fee of the request pairs with a currency it writes next to an amount
    shift: tuple[int, ...] = ()  # powers of ten it may be scaled by (an amount object's `exponent`)


def candidates(arguments: dict[str, Any], extra_names: tuple[str, ...] = (), *, minor_units: bool = False) -> list[Candidate]:
    """The control values of a call: in control arguments (see SENSITIVE_WORDS) every URL, email
    and IBAN — and anything else with an `@` a mail stack could read as a recipient — else the
    whole value as an amount, a currency, a path, a digit string or plain text; in any other
    string argument every URL and address it contains; in free text (subject, body: see
    FREE_TEXT_WORDS) only a whole value that *is* an email, URL, IBAN or absolute path. With
    `minor_units` (a tool listed in `dataflow_minor_unit_tools`, such as Stripe's), its amounts
    of money are in minor units. A fee of nothing moves nothing: it is no control value."""
    found: list[Candidate] = []
    extra = {n.lower() for n in extra_names}
    amounts: list[tuple[int, _Level, frozenset[str]]] = []  # money without a currency of its own, where it sits

    def visit(where: str, value: Any, kind: _Kind, level: _Level, owner: tuple[_Level, frozenset[str]] | None,
              name: str) -> None:
        if isinstance(value, dict):
            inner_level = _Level(level)
            keys = [set(_words(str(key))) for key in value]
            soft_codes = [_soft_code(str(key), inner) for key, inner in value.items()]
            beside_address = any(words & ADDRESS_WORDS and isinstance(inner, str) and EMAIL.search(inner) is not None
                                 for words, inner in zip(keys, value.values(), strict=True))
            money_here = any(bool(words & CURRENCY_WORDS) or soft for words, soft in zip(keys, soft_codes, strict=True))
            shift: tuple[int, ...] = ()
            if kind.amount or money_here or any(words & (MONEY_WORDS | FEE_WORDS) for words in keys):
                shift, odd = _shift(value, keys)
                found.extend(Candidate(f"{where}.{key}" if where else key, _short(value[key]), "scale") for key in odd)
            for (key, inner), words, soft in zip(value.items(), keys, soft_codes, strict=True):
                if isinstance(key, str) and key.strip():  # a key can carry an address too: {"to": {"eve@…": "Bob"}}
                    found.extend(c for c in _string_candidates(f"{where or 'arguments'} key", key.strip(), _Kind())
                                 if c.kind in ("email", "url", "iban", "path"))
                # A currency argument applies to the object that holds it (`currency` and
                # `currency.code` to the call, `payment.currency` to `payment`).
                # (`amount_currency` goes with `amount`, as django-money writes them)
                inner_owner = ((inner_level, frozenset(words - CURRENCY_WORDS - SOFT_CURRENCY_WORDS - MONEY_WORDS))
                               if words & CURRENCY_WORDS or soft else owner)
                inner_kind = kind.within(str(key), extra, money_here=money_here, beside_address=beside_address)
                if shift and not words & SCALE_WORDS:
                    inner_kind = replace(inner_kind, shift=shift)
                visit(f"{where}.{key}" if where else str(key), inner, inner_kind, inner_level, inner_owner, str(key))
        elif isinstance(value, list | tuple):
            for i, inner in enumerate(value):
                visit(f"{where}[{i}]", inner, kind, level, owner, name)
        elif isinstance(value, bool) or value is None:
            return
        elif kind.data:  # a money object's data field (see _Kind.data)
            for c in _data_candidates(where, value, kind):
                add(replace(c, minor=kind.minor, shift=kind.shift) if c.kind == "number" else c, level, owner, name)
        elif isinstance(value, int | float):
            if kind.sensitive and (kind.amount or not kind.soft):
                number = "digits" if isinstance(value, int) and not kind.amount else "number"
                add(Candidate(where, str(value), number, exact=True, currencies=kind.codes, money=kind.money,
                              minor=kind.minor, shift=kind.shift, loose=kind.loose), level, owner, name)
        elif isinstance(value, str) and value.strip():
            for c in _string_candidates(where, value.strip(), kind):
                add(c if c.kind != "number" else replace(c, currencies=kind.codes, money=kind.money, minor=kind.minor,
                                                         shift=kind.shift, loose=kind.loose), level, owner, name)

    def add(c: Candidate, level: _Level, owner: tuple[_Level, frozenset[str]] | None, name: str) -> None:
        if c.kind == "currency" and owner is not None and (code := currency_of(c.value)) is not None:
            owner[0].currencies.setdefault(code, owner[1])
        elif c.kind == "number" and c.money:
            amounts.append((len(found), level, frozenset(set(_words(name)) - MONEY_WORDS - FEE_WORDS - VALUE_WORDS
                                                         - MINOR_WORDS)))
        found.append(c)

    visit("", arguments, _Kind(), _Level(None), None, "")
    # (once every currency of the call is known: it may come after the amount)
    for i, level, _ in amounts:  # the currencies an amount that names none takes are claimed by it
        c = found[i]           # (not by a fee, nor by an amount of nothing: a decoy `fee: 0` unpaired the rest)
        at = level.nearest() if not c.currencies and not c.loose and not _moves_nothing(c) else None
        if at is not None:
            at.claimed = True
    for i, level, qualifier in amounts:
        # An amount whose key or name gives its currency (`{"JPY": {"amount": …}}`, `amount_jpy`)
        # must pair with the currency of the nearest object that gives one too — an explicit
        # `currency: "EUR"` went unchecked, and the tool paid in it (a second review) — unless
        # the amount's own code is that object's conversion target (`to_currency` beside a
        # `from_currency`; alone, `to_currency` or `quote_currency` was a decoy too), the currency
        # is a default, or an amount naming no currency claims it (`{"amount": 46, "currency":
        # "EUR", "amount_usd": 50}`, a batch's other payouts: a third review found such calls
        # refused; a fourth, that a `display_currency` of the amount's code or a `fee: 0` beside
        # it were decoys enough, so neither counts).
        own = found[i].currencies
        if own:
            at = level.nearest()
            if at is None or at.claimed:
                codes = ()
            else:
                targets, sources = at.for_named()
                codes = () if set(own) & targets else sources
        else:
            codes = level.codes_for(qualifier)
        if codes:
            found[i] = replace(found[i], currencies=tuple(dict.fromkeys((*own, *codes[:MAX_CODES + 1]))))
    if minor_units:
        found = [replace(c, minor=True) if c.kind == "number" and c.money else c for c in found]
    return [c for c in found if not _moves_nothing(c)]


def _soft_currency(name: str) -> bool:
    """Whether a name is an asset's or a unit's (see SOFT_CURRENCY_WORDS): it ends with one."""
    words = _words(name)
    return bool(words) and words[-1] in SOFT_CURRENCY_WORDS and not set(words) & (SENSITIVE_WORDS | FREE_TEXT_WORDS)


def _asset_name(name: str) -> bool:
    """An asset's name (`asset`, `coin`, …), where a code in any case or a ticker counts; a
    `unit` takes a currency only as written (`unit: "all"` is no Albanian lek)."""
    return _soft_currency(name) and _words(name)[-1] != "unit"


def _soft_code(name: str, value: Any) -> bool:
    """Whether a value under an asset's or a unit's name is a currency (so it applies to the
    amounts around it, as `currency` does)."""
    return (_soft_currency(name) and isinstance(value, str)
            and money_code(value, any_case=_asset_name(name)) is not None)


def _shift(value: dict[Any, Any], keys: list[set[str]]) -> tuple[tuple[int, ...], list[str]]:
    """The powers of ten a money object's `exponent` or `scale` may scale its amount by (both
    ways: which way it goes depends on the tool), or () when it gives none, or 0; and the keys of
    those it cannot apply (not a whole number up to DATA_SMALL: `"3x"`, `20`, `2.5`), each then a
    control value of its own that the request never gives (a second review found them ignored)."""
    shift: tuple[int, ...] = ()
    odd = []
    for key, inner, words in zip(value.keys(), value.values(), keys, strict=True):
        if not words & SCALE_WORDS or inner is None or isinstance(inner, bool):
            continue
        number = _whole_number(inner)
        if number == 0:
            continue
        if number is not None and abs(number) <= DATA_SMALL and not shift:  # (`3.0` and `"3"` are 3 to a tool)
            shift = (number, -number)
        else:
            odd.append(str(key))
    return shift, odd


def _short(value: Any) -> str:
    """A value as a finding shows it, without rendering what it holds (a nested object's text,
    once per level, was quadratic in a crafted call: a review)."""
    if isinstance(value, dict):
        return "{…}"
    if isinstance(value, list | tuple):
        return "[…]"
    return value[:200] if isinstance(value, str) else str(value)[:200]


def _whole_number(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value == int(value) else None
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,4}\s*", value):
        return int(value)
    return None


def _moves_nothing(candidate: Candidate) -> bool:
    """A fee of nothing (`fee: 0`, `shipping_cost: "0.00"`): no attacker gains by it. Not a price
    or a total of 0 (that gives the goods away), nor a count of one (`quantity: 1` is a hundred
    times a request for 0.01 BTC; both found by a review)."""
    if candidate.kind != "number" or candidate.shift:
        return False
    try:
        values = ({Decimal(candidate.value)} if candidate.exact
                  else readings(split_money(candidate.value)[0].replace(" ", "")))
    except (DecimalException, TypeError):
        return False
    if values != {Decimal(0)}:
        return False
    path = candidate.argument
    for _ in range(8):  # the nearest name that is not a value's or an amount's (`network_fee.value`)
        path, _, last = path.rpartition(".")
        words = _words(last.split("[")[0])
        if words and not set(words) <= VALUE_WORDS | MONEY_WORDS:
            return words[-1] in FEE_WORDS
        if not path:
            break
    return False


def _data_candidates(where: str, value: Any, kind: _Kind) -> list[Candidate]:
    """What a money object's data field holds that counts: a currency it names (`{"currency":
    {"name": "Euro"}}`, `symbol: "€"`), a number above DATA_SMALL or an amount written out under
    an amount (`minor_units: 500000`, `decimal: "5000.00"`): treated as data wholesale, they hid
    the currency and the amount (found by a review)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        if kind.amount and not (math.isfinite(value) and abs(value) <= DATA_SMALL):
            return [Candidate(where, str(value), "number", exact=True, currencies=kind.codes, money=True)]
        return []
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if kind.currency and currency_of(text) is not None:
            return [Candidate(where, text, "currency")]
        if kind.amount and NUMBER.fullmatch(split_money(text)[0].replace(" ", "")):
            return [Candidate(where, text, "number", currencies=kind.codes, money=True)]
    return []


DEFAULT_WORDS = frozenset({"default", "fallback"})  # a currency for the amounts that name none
SOURCE_WORDS = frozenset({"from", "source", "src", "sell", "base", "origin", "pay"})  # a conversion's source currency
# An amount given more currencies than this pairs with none (a crafted call of thousands of
# codes and amounts was checked code by amount: minutes, found by a review).
MAX_CODES = 8
TARGET_WORDS = frozenset({"to", "target", "into", "buy", "quote", "destination", "dest", "counter", "out", "output"})


class _Level:
    """An object of a call's arguments, and the currencies given in it for its amounts: an
    amount of money takes those of the nearest object around it that gives any — where that
    gives several, the one whose name matches (`sourceAmount` goes with `sourceCurrency`, an
    unqualified `amount` with `currency`), else all of them, each of which must pair. Found
    once per object, walking up (linear in the call, however deep: a first version re-joined
    the path at every level, seconds for a 26 KB call, found by a review)."""

    __slots__ = ("_codes", "_named", "_resolved", "claimed", "currencies", "parent")

    def __init__(self, parent: _Level | None) -> None:
        self.parent = parent
        self.currencies: dict[str, frozenset[str]] = {}
        self._resolved: _Level | bool | None = False  # (False: not looked for yet)
        self.claimed = False  # an amount that names no currency takes this object's currencies
        self._codes: dict[frozenset[str], tuple[str, ...]] | None = None
        self._named: tuple[frozenset[str], tuple[str, ...]] | None = None

    def nearest(self) -> _Level | None:
        """The nearest object, this one or one around it, that gives currencies."""
        chain: list[_Level] = []
        level: _Level | None = self
        while level is not None and level._resolved is False and not level.currencies:
            chain.append(level)
            level = level.parent
        found = None if level is None else (level if level.currencies else level._resolved)
        assert found is not False
        for walked in chain:
            walked._resolved = found
        return found

    def _nearest(self) -> dict[str, frozenset[str]]:
        at = self.nearest()
        return {} if at is None else at.currencies

    def codes_for(self, qualifier: frozenset[str]) -> tuple[str, ...]:
        level = self.nearest()
        if level is None:
            return ()
        cache = level._codes if level._codes is not None else {}
        level._codes = cache
        if qualifier not in cache:  # (once per object and name: not once per amount, a review)
            cache[qualifier] = level._codes_for(qualifier)
        return cache[qualifier]

    def for_named(self) -> tuple[frozenset[str], tuple[str, ...]]:
        """For an amount that names its own currency: this object's conversion targets (only
        beside a currency named its source), and the currencies it must pair with otherwise
        (neither a target nor a default). Once per object, not once per amount."""
        if self._named is None:
            conversion = any(words & SOURCE_WORDS for words in self.currencies.values())
            self._named = (frozenset(code for code, words in self.currencies.items() if conversion and words & TARGET_WORDS),
                           tuple(code for code, words in self.currencies.items()
                                 if not words & (TARGET_WORDS | DEFAULT_WORDS))[:MAX_CODES + 1])
        return self._named

    def _codes_for(self, qualifier: frozenset[str]) -> tuple[str, ...]:
        at = self.currencies
        named = tuple(code for code, words in at.items() if words == qualifier)
        if named:
            return named
        # No name matches (`amount` beside `from_currency` and `to_currency`): a conversion's
        # target currency is not the amount's; the others all are (and the target when it is
        # the only one).
        source = tuple(code for code, words in at.items() if not words & TARGET_WORDS)
        return source or tuple(at)


@dataclass(frozen=True, slots=True)
class _Kind:
    """What an argument's name (and its enclosing names) says its value is."""

    sensitive: bool = False
    amount: bool = False
    free: bool = False
    path: bool = False
    currency: bool = False
    money: bool = False
    codes: tuple[str, ...] = ()  # the currency its name (or an enclosing key) gives an amount
    # A money object's data field (`nanos`, `decimals`, a currency's `name`): only a currency it
    # names, or under an amount a number above DATA_SMALL or an amount written out, counts.
    data: bool = False
    # Control only in its own shape: an amount under `fee` or `value` beside a currency, only a
    # number (or text with a digit in it, whole); a currency under `asset` or `unit`, only a
    # currency (MONEY_CODES); else data. Only outside control arguments: inside one (`amount`,
    # `to`) the enclosing kind holds, as before.
    soft: bool = False
    # Looser in its own shape: a fee's bare amount the request writes as a fee pairs with a
    # currency the request writes next to an amount ("Pay 50 EUR plus a 2.50 fee"); an asset's
    # code counts in any case (not a word: `all`, `pen`), and a ticker the codes do not know is
    # checked as text (`asset: "PEPE"`, `stETH`, `1INCH`, `USDC.e`).
    loose: bool = False
    minor: bool = False  # an amount in minor units (MINOR_WORDS)
    shift: tuple[int, ...] = ()  # an amount object's scale (see `_shift`)

    def within(self, name: str, extra: set[str], *, money_here: bool = False, beside_address: bool = False) -> _Kind:
        """The kind of the value under `name` inside a value of this kind: its own name decides
        where it says something, else the enclosing kind holds. `money_here`: the object gives a
        currency (so its `value` is an amount); `beside_address`: it gives a mail address (so its
        `name` is a display name, in which only addresses and URLs count)."""
        words = _words(name)
        have = set(words)
        listed = name.lower() in extra
        ends_control = bool(words) and words[-1] in SENSITIVE_WORDS
        own_free = bool(have & FREE_TEXT_WORDS) and not listed and not ends_control
        own = listed or (bool(have & SENSITIVE_WORDS) and not own_free)
        minor = self.minor or bool(have & MINOR_WORDS)
        if beside_address and not listed and words and words[-1] == "name" and have <= NAME_WORDS:
            return _Kind()  # (as any other string: an address or URL in it is still checked)
        if not own and not own_free and words and (not self.sensitive or self.soft):  # (inside control, the enclosing kind holds)
            if words[-1] in FEE_WORDS or (money_here and have <= VALUE_WORDS):
                codes = _name_codes(name, whole=False) or self.codes
                return _Kind(True, True, False, False, False, True, codes, soft=True,
                             loose=words[-1] in FEE_WORDS or (self.loose and self.amount), minor=minor)
            if _soft_currency(name):
                return _Kind(True, False, False, False, True, False, soft=True, loose=_asset_name(name))
        if (self.amount or self.currency) and not own and have & MONEY_DATA_WORDS:
            return _Kind(self.sensitive, self.amount, False, False, self.currency, self.money, self.codes, True,
                         minor=minor and self.amount)
        # A currency in a money argument's name (`amount_eur`, `amountXBT`), in any key inside an
        # amount (`{"amount": {"XBT": 5000}}`), in a key that is a common code anywhere
        # (`{"payouts": {"EUR": {"amount": 5000}}}`); not an acronym elsewhere (`priceInclVAT`, `ACH`).
        if own and have & MONEY_WORDS:
            codes = _name_codes(name, whole=False)
        elif self.amount:
            codes = _name_codes(name, whole=True)
        else:
            bare = name.strip()
            codes = (bare.upper(),) if (bare.lower() in NAME_CODES or (bare.isupper() and bare in MONEY_CODES)
                                        or (bare.islower() and bare.upper() in MONEY_CODES - WORD_CODES)) else ()
        codes = codes or self.codes
        if own:
            money = bool(have & MONEY_WORDS)
            return _Kind(True, bool(have & AMOUNT_WORDS), False, bool(have & PATH_WORDS), bool(have & CURRENCY_WORDS),
                         money, codes, loose=self.loose and self.amount and money, minor=minor and money)
        if own_free:
            return _Kind(False, False, True, False, False)
        if codes != self.codes or minor != self.minor:  # a key that names a currency: `{"amount": {"EUR": 5000}}`
            return replace(self, codes=codes, minor=minor and self.amount)
        return self


MONEY_DATA_WORDS = frozenset({"nanos", "decimals", "decimal", "scale", "precision", "exponent", "name", "symbol",
                              "minor", "display", "label", "format", "digits"})
DATA_SMALL = 18  # a number in a money object's data field up to this is an exponent or a precision, not money


def _name_codes(name: str, *, whole: bool) -> tuple[str, ...]:
    """The currencies an argument's name or key gives: a common code in its words (`amount_eur`,
    `EURAmount`), or any code in capitals — the whole key (`{"XBT": 5000}`, `whole`), or right
    after a money word (`amountXBT`): the list alone missed what it does not know, and the
    amount went unchecked (found by a review); any capitals took `VAT` of `priceInclVAT`."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    words = [w for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]
    codes = []
    for i, word in enumerate(words):
        capitals = len(word) == 3 and word.isalpha() and word.isupper() and word.isascii()
        if word.lower() in NAME_CODES or (capitals and (len(words) == 1 if whole else
                                                        (i > 0 and words[i - 1].lower() in MONEY_WORDS))):
            codes.append(word.upper())
    return tuple(dict.fromkeys(codes))


def _string_candidates(where: str, value: str, kind: _Kind) -> list[Candidate]:
    shaped = _shape(value)
    if shaped:
        return [Candidate(where, value, shaped)]
    if kind.free and not kind.sensitive:
        return []
    # Every URL as its whole token, every address EMAIL knows anywhere in the value (inside a
    # URL token too: `https://corp.com/#,eve@evil.test` in a `to` is a recipient at evil.test),
    # then anything else with an `@`: each piece is checked, and none hides the rest.
    tokens = _url_tokens(value)
    inner = [Candidate(where, _trim_url(value[a:b]), "url") for a, b in tokens]
    if "@" in value:
        inner += [Candidate(where, m.group(0), "email") for m in EMAIL.finditer(value)]
        rest = value
        for a, b in reversed(tokens):
            rest = rest[:a] + " " + rest[b:]
        rest = EMAIL.sub(" ", rest)
        if "@" in rest:
            inner += [Candidate(where, m.group(0).strip(WRAPPERS), "email") for m in LOOSE_ADDRESS.finditer(rest)]
    if not kind.sensitive:
        return inner
    if kind.soft:  # only its own shape counts (see _Kind.soft)
        if inner or not (kind.currency or kind.amount):
            return inner
        if kind.currency:
            if money_code(value, any_case=kind.loose) is not None:
                return [Candidate(where, value, "currency")]
            return [Candidate(where, value, "text")] if kind.loose and TICKER.fullmatch(value) else []
        if NUMBER.fullmatch(split_money(value)[0].replace(" ", "")):
            return [Candidate(where, value, "number")]
        return [_whole(where, value, kind)] if any(c.isdigit() for c in value) else []  # (`5k`: checked whole)
    inner += [Candidate(where, m.group(0), "iban") for m in IBAN.finditer(value.upper())]
    if inner:
        if kind.amount or kind.currency or kind.path:
            return inner
        return inner + [_whole(where, name, kind) for name in _bare_names(value, tokens)]
    if kind.currency and currency_of(value):
        return [Candidate(where, value, "currency")]
    if kind.amount:
        if NUMBER.fullmatch(split_money(value)[0].replace(" ", "")):
            return [Candidate(where, value, "number")]
    elif kind.path:
        return [Candidate(where, value, "relpath")]
    return [_whole(where, value, kind)]


JOINERS = frozenset({"and", "or", "und", "et", "y", "e", "cc", "bcc", "to", "also", "plus", "&", "+", "mailto"})
# A display name: quoted, before an address in angle brackets (`"Smith, Bob" <bob@…>`); the
# address in brackets; a comment in brackets after an address.
_DISPLAY_NAME = re.compile(r'(?:"[^"\n]{0,300}"|\u201c[^\u201d\n]{0,300}\u201d|\u00ab[^\u00bb\n]{0,300}\u00bb)'
                           r'(?=\s{0,3}<[^<>@\n]{0,300}@[^<>\n]{0,300}>)')  # (bounded: unclosed quotes were quadratic)
_COMMENT_AFTER = re.compile(r"(" + EMAIL.pattern + r">?)[^\S\n]{0,3}\([^()\n]{0,200}\)")  # `bob@corp.com (Bob Smith)`
_ANGLE_ADDRESS = re.compile(r"<[^<>@\n]{0,300}@[^<>\n]{0,300}>")


def _bare_names(value: str, tokens: list[tuple[int, int]]) -> list[str]:
    """What a list of recipients holds besides its addresses, URLs and IBANs: the bare name in
    `bob@corp.com, mallory` (or `… mallory`, `… and mallory`, `… "mallory"`), which a mail tool
    may resolve to a contact (found by a review). A display name before an address in angle
    brackets is not one (`"Smith, Bob" <bob@…>`, `Bob Smith <bob@…>`), nor `mailto:` or `cc:`."""
    rest = value
    for a, b in reversed(tokens):
        rest = rest[:a] + " " + rest[b:]
    names = []
    for piece in re.split(r"[,;\n]", _COMMENT_AFTER.sub(r"\1", _DISPLAY_NAME.sub(" ", rest))):
        angled = list(_ANGLE_ADDRESS.finditer(piece))
        if angled:  # a display name before its address is data; what follows the address is not
            piece = piece[angled[-1].end():]
        piece = LOOSE_ADDRESS.sub(" ", EMAIL.sub(" ", piece))
        words = [w.strip(WRAPPERS) for w in piece.split()]
        name = " ".join(w for w in words if w and w.lower() not in JOINERS)
        if name and not IBAN.search(name.upper()) and any(c.isalnum() for c in name):
            names.append(name)
    return names


def _whole(where: str, value: str, kind: _Kind) -> Candidate:
    """A control value with no address, URL or IBAN in it: a digit string or plain text."""
    return Candidate(where, value, "digits" if _digits(value) and not kind.amount else "text")


def _trim(value: str) -> str:
    return value.rstrip(TRAILING)


def _url_tokens(value: str) -> list[tuple[int, int]]:
    """Where the URLs of an argument are: each `scheme://` up to the next blank, the scheme
    found wherever it starts (glued to an option, `curl -xhttps://evil.test:8080`, it is a
    URL a client reads; the lookbehind of a pattern missed it), by search for `://` and a walk
    back over the scheme's characters (linear: no pattern tried at every letter)."""
    spans: list[tuple[int, int]] = []
    at = value.find("://")
    while at != -1:
        start = at
        while start > 0 and at - start < 32 and (value[start - 1].isascii() and (value[start - 1].isalnum() or value[start - 1] in "+.-")):
            start -= 1
        while start < at and not value[start].isalpha():
            start += 1
        end = at + 3
        while end < len(value) and not value[end].isspace():
            end += 1
        if start < at and (not spans or start >= spans[-1][1]):
            spans.append((start, end))
        at = value.find("://", max(end, at + 3))
    return spans


def _trim_url(value: str) -> str:
    """A URL token without what closes the sentence, bracket, quote or JSON string it stands in."""
    return value.rstrip(URL_CLOSERS)


def _shape(value: str) -> str:
    if EMAIL.fullmatch(value):
        return "email"
    if URL.fullmatch(value):
        return "url"
    if IBAN.fullmatch(value.upper()) and any(c.isdigit() for c in value[4:]):
        return "iban"
    if PATH.match(value) and len(value) > 1:
        return "path"
    return ""


@dataclass(frozen=True, slots=True)
class Source:
    label: str  # e.g. "the output of office__read_document"
    text: str
    # What the text holds, each read once per source and kept while the step's ledger lives: a
    # check compares every candidate against these, not the text (a call with 40 URLs against
    # a 100 KB document re-read it per URL and took seconds; a cache for the whole process
    # held ten times each text, found by a review).
    _views: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def view(self, name: str, build: Callable[[str], Any]) -> Any:
        if name not in self._views:
            self._views[name] = build(self.text)
        return self._views[name]


@dataclass(slots=True)
class Verdict:
    """What the policy says about one call: go ahead, refuse it, or ask a human."""

    action: str = "allow"  # allow, refuse, confirm
    reason: str = ""
    findings: list[dict[str, str]] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return self.action == "refuse"

    @property
    def confirm(self) -> bool:
        return self.action == "confirm"

    @property
    def refusal(self) -> str:
        return REFUSAL.format(reason=self.reason)

    @property
    def event(self) -> dict[str, Any] | None:
        """The `tool.dataflow` event data shown on the run (None when the call is allowed)."""
        return None if self.action == "allow" else {"action": self.action, "reason": self.reason, "findings": self.findings}


class StepFlow:
    """The value ledger of one attempt of an agent step."""

    def __init__(self, mode: str = "off", *, trusted: list[Source] | None = None, untrusted: list[Source] | None = None,
                 trusted_tools: tuple[str, ...] = (), checked_tools: tuple[str, ...] = (),
                 sensitive_arguments: tuple[str, ...] = (), minor_unit_tools: tuple[str, ...] = ()):
        self.mode = mode
        self.minor_unit_tools = minor_unit_tools
        self.trusted = list(trusted or [])
        self.untrusted = list(untrusted or [])
        self.trusted_tools = trusted_tools
        self.checked_tools = checked_tools
        self.sensitive_arguments = sensitive_arguments
        self.specs: dict[str, Any] = {}  # each tool's spec as `check` was given it (its input schema's enums)

    @classmethod
    def for_step(cls, defences: Any, *, system_prompt: str, run_input: Any, template: str, prompt: str) -> StepFlow:
        """The ledger at the start of an attempt: the request and system prompt are trusted; the
        rendered prompt too, unless its template pulls in earlier steps' outputs."""
        if defences.dataflow == "off":  # nothing is observed or checked: no ledger to build
            return cls("off")
        trusted = [Source("the agent's system prompt", system_prompt or ""),
                   Source("the run input", "\n".join(_leaves(run_input))),
                   Source("the step's prompt", template or "")]
        untrusted = []
        if STEP_REF.search(template or ""):
            untrusted.append(Source("earlier steps' outputs in the prompt", prompt))
        else:
            trusted.append(Source("the step's prompt", prompt))
        return cls(defences.dataflow, trusted=trusted, untrusted=untrusted,
                   trusted_tools=tuple(defences.dataflow_trusted_tools), checked_tools=tuple(defences.dataflow_tools),
                   sensitive_arguments=tuple(defences.dataflow_arguments),
                   minor_unit_tools=tuple(defences.dataflow_minor_unit_tools))

    def observe(self, tool: str, content: str, *, failed: bool = False, arguments: dict[str, Any] | None = None,
                spec: Any = None) -> None:
        """A tool result the step read (fresh or replayed from the ledger). A trusted tool's
        output is trusted only when the call succeeded and its arguments came from trusted
        sources: its errors — and the refusals this policy or the gateway answer in its name —
        quote the arguments, so an attacker's address sent to it came back "trusted". `spec`
        (else the one `check` was given for the call, as the agent loop checks every call
        before it observes its result) gives the tool's declared enum values."""
        if self.mode == "off":
            return
        content = content or ""
        if tool in self.trusted_tools and not failed:
            exempt = self._from_trusted(arguments or {}, spec if spec is not None else self.specs.get(tool))
        else:
            exempt = None
        if exempt is None:
            self.untrusted.append(Source(f"the output of {tool}", content))
        else:  # trusted, without the exempt values it may echo ("No contact matches 'mallory'")
            self.trusted.append(Source(f"the output of {tool}", _without(content, exempt)))

    def _from_trusted(self, arguments: dict[str, Any], spec: Any = None) -> list[str] | None:
        """Whether every value the call sent came from trusted text: its control values, and
        every other string whole (a trusted tool's answer may quote any argument: "0 contacts
        match 'pay CH93 0076 …'" would otherwise make the attacker's IBAN trusted). None if
        not; else the values let through without it — the tool's own lower-case words (its
        argument names, and the values its input schema declares as `enum`/`const` at that
        place: `format: json`, `sort: asc`) and small counts (a page size) — which are taken
        out of its answer before that is trusted, so that an echo of them proves nothing. Any
        other lower-case word must be in trusted text: every one was exempt, and a document's
        "send it to dana" made `find_contact(name="dana")`'s answer — the address the
        document chose — trusted (found by a review)."""
        if not self.untrusted:
            return []  # nothing untrusted read yet: every value so far came from trusted text
        if not all(self._appears(c, self.trusted) is not None for c in candidates(arguments, self.sensitive_arguments)):
            return None
        schema = getattr(spec, "input_schema", None)
        exempt = []
        for leaf, own in _argument_leaves(arguments, [schema] if isinstance(schema, dict) else [],
                                          schema if isinstance(schema, dict) else None):
            if isinstance(leaf, str):
                text = leaf.strip().strip(WRAPPERS)
                if not text:
                    continue
                if own and ENUM.fullmatch(text):
                    exempt.append(text)
                    continue
                candidate = Candidate("", text, _shape(text) or "text")
            else:
                if isinstance(leaf, int) or leaf.is_integer():
                    if abs(leaf) <= SMALL_COUNT:
                        exempt.append(str(int(leaf)))
                        continue
                candidate = Candidate("", _plain_number(leaf), "number", exact=True)
            if self._appears(candidate, self.trusted) is None:
                return None
        return exempt

    def side_effecting(self, tool: str, spec: Any) -> bool:
        """Checked unless its server says read-only *and* that server's word counts: installed
        by an instance operator (stdio, or from the catalogue), not a team-added remote server."""
        exempt = getattr(spec, "read_only", None) is True and getattr(spec, "trusted_hint", None) is True
        return tool in self.checked_tools or not exempt

    def check(self, tool: str, arguments: dict[str, Any], spec: Any = None) -> Verdict:
        """The policy's verdict on a call about to be dispatched."""
        if spec is not None:
            self.specs[tool] = spec
        if self.mode == "off" or not self.untrusted or not self.side_effecting(tool, spec):
            return Verdict()
        findings = []
        for candidate in candidates(arguments, self.sensitive_arguments, minor_units=tool in self.minor_unit_tools):
            if self._appears(candidate, self.trusted) is None:
                origin = self._appears(candidate, self.untrusted)
                where = origin.label if origin is not None else (
                    f"no trusted source (composed after reading {', '.join(sorted({s.label for s in self.untrusted}))})")
                findings.append({"argument": candidate.argument, "value": candidate.value[:200], "kind": candidate.kind,
                                 "source": where})
        if not findings:
            return Verdict()
        reason = "; ".join(f"`{f['argument']}` = {f['value']!r} comes from {f['source']}, not from the user's request"
                           for f in findings[:3])
        return Verdict(self.mode, reason, findings)

    @staticmethod
    def _appears(candidate: Candidate, sources: list[Source]) -> Source | None:
        for source in sources:
            if _contains(source, candidate):
                return source
        return None


ENUM = re.compile(r"[a-z][a-z_-]{0,15}")
SMALL_COUNT = 100


def _without(text: str, values: list[str]) -> str:
    """`text` with each of `values` blanked wherever it stands as a word or number of its own."""
    for value in dict.fromkeys(values):
        text = re.sub(rf"(?<![\w.,]){re.escape(value)}(?![\w]|[.,]\d)", " ", text, flags=re.IGNORECASE)
    return text


def _argument_leaves(value: Any, schemas: list[Any], root: dict[str, Any] | None = None) -> list[tuple[Any, bool]]:
    """The strings (dict keys too) and numbers of a call's arguments, each on its own, with
    whether it is the tool's own word: an argument name, or a string that the input schema
    (`schemas`: the alternatives that apply at its place) declares in an `enum` or `const`.
    A local `$ref` (`#/$defs/Order`, how pydantic and so the MCP SDK write an Enum
    parameter) is followed within `root`, the whole input schema: not followed, the SDK's
    `sort: "asc"` made a trusted lookup untrusted (a review of the fixes)."""
    schemas = _alternatives(schemas, root)
    if isinstance(value, str):
        return [(value, any(_declares(schema, value) for schema in schemas))]
    if isinstance(value, dict):
        leaves: list[tuple[Any, bool]] = []
        for key, inner in value.items():
            if isinstance(key, str):
                leaves.append((key, True))
            inside = [props[key] for schema in schemas
                      if isinstance(props := schema.get("properties"), dict) and key in props]
            inside += [schema["additionalProperties"] for schema in schemas
                       if isinstance(schema.get("additionalProperties"), dict)]
            leaves += _argument_leaves(inner, inside, root)
        return leaves
    if isinstance(value, list | tuple):
        items = [schema["items"] for schema in schemas if isinstance(schema.get("items"), dict)]
        return [leaf for inner in value for leaf in _argument_leaves(inner, items, root)]
    if isinstance(value, int) and not isinstance(value, bool):
        return [(value, False)]
    if isinstance(value, float) and math.isfinite(value):  # (not `isfinite` of an int: 10**400 overflows)
        return [(value, False)]
    return []


def _alternatives(schemas: list[Any], root: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The schemas and, within them, their `anyOf` / `oneOf` / `allOf` branches and the local
    `$ref`s they name in `root` (objects only; each schema once, at most 64)."""
    found: list[dict[str, Any]] = []
    seen: set[int] = set()
    pending = [schema for schema in schemas if isinstance(schema, dict)]
    while pending and len(found) < 64:
        schema = pending.pop()
        if id(schema) in seen:
            continue
        seen.add(id(schema))
        found.append(schema)
        for word in ("anyOf", "oneOf", "allOf"):
            branches = schema.get(word)
            if isinstance(branches, list):
                pending += [branch for branch in branches if isinstance(branch, dict)]
        target = _local_ref(root, schema.get("$ref"))
        if target is not None:
            pending.append(target)
    return found


def _local_ref(root: dict[str, Any] | None, ref: Any) -> dict[str, Any] | None:
    """`#/$defs/Order` (or any `#/a/b` path) within `root`, or None."""
    if root is None or not isinstance(ref, str) or not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/")[:8]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node if isinstance(node, dict) else None


def _declares(schema: dict[str, Any], value: str) -> bool:
    values = schema.get("enum")
    return (isinstance(values, list) and any(isinstance(v, str) and v == value for v in values)) or (
        schema.get("const") == value)


def _plain_number(value: int | float) -> str:
    """A number as text a person writes: `0.00005`, not `5e-05`."""
    return str(value) if isinstance(value, int) else format(Decimal(repr(value)).normalize(), "f")


def _leaves(value: Any, numbers: bool = True, keys: bool = True) -> list[str]:
    """The strings of a JSON value (its dict keys too, with `keys`) and, with `numbers`, its
    numbers as text: each value on its own, not its JSON text, in which escapes stick to them
    (`\\nbob@corp.com`)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [leaf for key, inner in value.items()
                for leaf in (*(_leaves(key, numbers, keys) if keys else ()), *_leaves(inner, numbers, keys))]
    if isinstance(value, list | tuple):
        return [leaf for inner in value for leaf in _leaves(inner, numbers, keys)]
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    if numbers and isinstance(value, float) and math.isfinite(value):
        return [_plain_number(value)]
    return []


def _contains(source: Source, candidate: Candidate) -> bool:
    """Whether the candidate value is one of the values of the source text: whole values
    compared after normalising, never a substring of one."""
    if not source.text:
        return False
    value = candidate.value
    kind = candidate.kind
    if kind == "number":
        if candidate.exact:  # a JSON number: exactly this value
            wanted = {Decimal(value).normalize()}
            marks = []
        else:  # written out ("4,900", "50.000", "1 000 000"): one number, every reading trusted
            number, marks = split_money(value)
            wanted = readings(number.replace(" ", ""))
        if not wanted:
            return False
        try:
            if candidate.shift:  # every reading of a scaled amount (`exponent: 3`: 50,000 or 0.05)
                wanted = {w.scaleb(s) for w in wanted for s in candidate.shift}
            codes = {currency_of(mark) for mark in marks}
            if not codes and not candidate.currencies:
                return _in_major(wanted, None, candidate.minor) <= source.view("amounts", amounts_in)
            # Its currency too, known or not ("50 BTC", "50 XBT" against a request for 50 EUR), and
            # written with this amount, or with the list it stands in ("Pay Bob 30 and Carol 70
            # EUR"): "50 EUR … 5000 JPY" is no request for 5000 EUR. Every currency the call gives
            # it must pair: a second, decoy currency argument does not let the first through.
            money = source.view("money", money_in)
            if len(candidate.currencies) > MAX_CODES:
                return False
            codes |= {currency_of(code) for code in candidate.currencies}
            fees = source.view("fees", fees_in) if candidate.loose else frozenset()
            written = source.view("marked currencies", marked_currencies_in) if candidate.loose else frozenset()
            return all((v, code) in money or ((v, None) in money and v in fees and code in written)
                       for code in codes for v in _in_major(wanted, code, candidate.minor))
        except DecimalException:  # (scaled out of range)
            return False
    if kind == "currency":
        return currency_of(value) in source.view("currencies", currencies_in)
    if kind == "scale":  # a scale the policy cannot apply: no request gives one
        return False
    if kind == "relpath":  # a whole path the text wrote, never a piece of one (nor the root, home or `..`)
        wanted = posixpath.normpath(value.strip().replace("\\", "/"))
        return wanted not in BARE_PATHS and wanted in source.view("paths written", _paths_written)
    if kind == "digits":
        return _digits(value) in source.view("digits", digits_in)
    if kind == "email":  # ('bob@corp.com' in quotes: the quote is not part of the address there)
        return value.lower() in source.view("addresses", _addresses_in)
    if kind == "iban":
        return _compact(value).upper() in source.view("ibans", _ibans_in)
    if kind == "url":
        return _url_trusted(value, source.view("urls", _urls_in))
    if kind == "path":
        return _path(value) in source.view("paths", _absolute_paths_in)
    bare = normalise(value)
    if len(bare) < SHORT:
        return False
    # A repository's owner and name are written `corp/app`: there the slash parts them.
    slash = bool(set(_words(candidate.argument.rpartition(".")[2].split("[")[0])) & REPO_WORDS)
    return _has_word_run(source.view("normalised", normalise), bare, slash_parts=slash)


def _in_major(values: set[Decimal], code: str | None, minor: bool) -> set[Decimal]:
    """Amounts in major units: minor units divided by 10 to the currency's digits (2 unless
    MINOR_DIGITS says otherwise)."""
    if not minor:
        return values
    digits = MINOR_DIGITS.get(code or "", 2)
    return {v.scaleb(-digits) for v in values}


REPO_WORDS = frozenset({"owner", "repo", "repos", "repository", "repositories"})


def _has_word_run(text: str, wanted: str, *, slash_parts: bool = False) -> bool:
    """`wanted` in `text` between non-word characters, by plain search (a pattern built from a
    100 KB argument cost seconds to compile and run). The first `WORD_RUN_TRIES` places it
    occurs are looked at: a value found only past them is refused (`"a" * 50000` in
    `"a" * 100000` occurs 50,001 times, each a comparison of 50,000 characters)."""
    at = text.find(wanted)
    for _ in range(WORD_RUN_TRIES):
        if at == -1:
            return False
        end = at + len(wanted)
        before, after = (text[at - 1] if at else " "), (text[end] if end < len(text) else " ")
        if slash_parts and (before == "/" or after == "/"):
            before, after = (" " if before == "/" else before), (" " if after == "/" else after)
        if not _word_char(before) and not _word_char(after):
            return True
        at = text.find(wanted, at + 1)
    return False


WORD_RUN_TRIES = 64


def _word_char(char: str) -> bool:
    """A character a match may not border: a word's, or a path separator's (`finance` is not a
    value of `/finance/q3-draft.xlsx`, under `target` or `source` either)."""
    return char.isalnum() or char in "_/\\"


def _addresses_in(text: str) -> frozenset[str]:
    """The addresses a text writes, lower case: what EMAIL knows, and anything else with an `@`
    (`@daily`, `HEAD@{2}`, `ops@[203.0.113.7]`, so that the user's own is trusted too)."""
    if "@" not in text:
        return frozenset()
    found = {m.group(0).lower() for m in EMAIL.finditer(text)}
    found |= {f.lstrip("'") for f in found}
    found |= {m.group(0).strip(WRAPPERS).lower() for m in LOOSE_ADDRESS.finditer(text)}
    return frozenset(found)


def _paths_written(text: str) -> frozenset[str]:
    """The relative and absolute paths a text writes, normalised: each token without the
    brackets, quotes and Markdown around it (`**report-old.txt**`, `(tmp)`, `“x”.`; a leading
    dot or underscore stays: `.env`, `__init__.py`, `./reports`), and each quoted span whole
    (`"Q3 Report.docx"`)."""
    values = [t.lstrip(OPENERS).rstrip(CLOSERS) for t in TOKEN.findall(text)]
    values += [next(g for g in m.groups() if g is not None).strip() for m in QUOTED.finditer(text)]
    return frozenset(posixpath.normpath(v.replace("\\", "/")) for v in values if v)


def _absolute_paths_in(text: str) -> frozenset[str]:
    return frozenset(_path(_trim(m.group(0))) for m in PATHS_IN.finditer(text))


def _urls_in(text: str) -> dict[tuple[str, str, int | None], list[SplitResult]]:
    """The text's URLs, split once and grouped by scheme, host and port (what must be equal)."""
    found: dict[tuple[str, str, int | None], list[SplitResult]] = {}
    for match in URL.finditer(text):
        try:
            url = urlsplit(_trim(match.group(0)))
            found.setdefault(_origin(url), []).append(url)
        except ValueError:
            continue
    return found


def _origin(url: SplitResult) -> tuple[str, str, int | None]:
    scheme = url.scheme.lower()
    return scheme, (url.hostname or "").rstrip("."), url.port or DEFAULT_PORTS.get(scheme)


def _url_trusted(value: str, trusted: dict[tuple[str, str, int | None], list[SplitResult]]) -> bool:
    try:
        got = urlsplit(value.strip())
        origin = _origin(got)
    except ValueError:
        return False
    return any(_url_within(got, ref) for ref in trusted.get(origin, ()))


def _ibans_in(text: str) -> set[str]:
    """The IBANs of a text, compact; a spaced one also without its trailing groups (the
    pattern may have swallowed a following word)."""
    found: set[str] = set()
    for match in IBAN.finditer(text.upper()):
        groups = match.group(0).split()
        found.update("".join(groups[:n]) for n in range(min(3, len(groups)), len(groups) + 1))
    return found


def _path(value: str) -> str:
    if re.match(r"^[A-Za-z]:\\", value):
        return value.rstrip("\\").lower()
    return posixpath.normpath(value)


DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


def _url_within(got: SplitResult, ref: SplitResult) -> bool:
    """A URL is trusted when a trusted URL has the same scheme, host and port (the caller
    looked it up by those), and its path is the trusted path or an ancestor of it on a `/`
    boundary (`https://corp.com/` and `https://corp.com/reports/` for
    `https://corp.com/reports`, never `https://corp.com/rep` nor `https://corp.com/reports/x`).
    A query must be the trusted one, on the trusted path."""
    if (got.username, got.password) != (ref.username, ref.password):
        return False
    if got.fragment and got.fragment != ref.fragment:  # (`https://corp.com/#,eve@evil.test`)
        return False
    path, base = got.path.rstrip("/"), ref.path.rstrip("/")
    if path == base:
        return not got.query or got.query == ref.query
    return not got.query and (base + "/").startswith(path + "/")
