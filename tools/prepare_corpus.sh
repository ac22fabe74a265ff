#!/usr/bin/env bash
# prepare_corpus.sh — the English training corpus of the bundled reference model, from Debian
# packages (run here, on Debian 12, as root; needs apt-get, dpkg-deb and /usr/bin/python3).
#
#   tools/prepare_corpus.sh [OUT_DIR]        (default: .corpus in the repository root)
#
# Downloads (apt-get download, no install) these packages of Debian 12 "bookworm":
#   dict-gcide      GNU Collaborative International Dictionary of English (GPL-2+)
#   fortunes, fortunes-min   fortune-mod's cookie databases (BSD, see their copyright file)
#   bible-kjv-text, bible-kjv   King James Version text + its reader program `bible`
#                               (KJV text: public domain; program: GPL-2+)
# extracts them with dpkg -x into a temporary folder, and turns them into plain UTF-8 documents:
#   GCIDE    entries without pronunciation, etymology and source tags ("Zebra, n. (Zool.) Any
#            member of ..."), consecutive entries grouped into "pages" of about 3 KB;
#   fortunes one document per cookie (files split on "%" lines; ascii-art left out);
#   KJV      one document per chapter, printed by the package's own reader
#            (`bible -p DIR "Gen1:1-Rev22:21"`), verse lines re-joined.
# Cleaning: UTF-8 (cp1252 fallback per line), no control characters or backspace overstrikes,
# horizontal whitespace collapsed, no blank lines inside a document; exact duplicates dropped.
# Split: per source, documents are shuffled with a fixed seed and the first ones (about 1% of
# that source's bytes; 280 KB in all) go to heldout.txt; the rest, shuffled again as one list,
# to train.txt.gz. In both files documents are separated by one blank line ("\n\n").
# Output in OUT_DIR: train.txt.gz, heldout.txt, stats.json, SOURCES.md, licenses/<pkg>.copyright
# (the Debian copyright files of the packages). The downloads are deleted at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/.corpus}
SEED=${CORPUS_SEED:-1234}
HELDOUT_BYTES=${CORPUS_HELDOUT_BYTES:-280000}
PKGS="dict-gcide fortunes fortunes-min bible-kjv-text bible-kjv"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# Keep the corpus out of git (the repository root's exclude file, not .gitignore).
if [ "$OUT" = "$ROOT/.corpus" ] && [ -d "$ROOT/.git/info" ]; then
    grep -qxF '/.corpus/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.corpus/' >> "$ROOT/.git/info/exclude"
fi

echo "prepare_corpus: downloading $PKGS" >&2
if ! (cd "$TMP" && apt-get download $PKGS >/dev/null 2>"$TMP/apt.err"); then
    echo "prepare_corpus: apt-get download failed; running apt-get update once" >&2
    apt-get update -qq
    (cd "$TMP" && apt-get download $PKGS >/dev/null)
fi
mkdir -p "$TMP/x" "$OUT/licenses"
for deb in "$TMP"/*.deb; do
    dpkg-deb -x "$deb" "$TMP/x"
done
# Versions, for SOURCES.md.
for deb in "$TMP"/*.deb; do
    dpkg-deb -f "$deb" Package Version | paste -sd' ' -
done | sort > "$TMP/versions.txt"
for p in dict-gcide fortunes fortunes-min bible-kjv-text bible-kjv; do
    cp "$TMP/x/usr/share/doc/$p/copyright" "$OUT/licenses/$p.copyright"
done

echo "prepare_corpus: printing the King James text with the package's reader" >&2
# The reader wraps at $COLUMNS (the lines are re-joined below); -p points it at the data files.
COLUMNS=80 "$TMP/x/usr/bin/bible" -p "$TMP/x/usr/lib" "Gen1:1-Rev22:21" > "$TMP/kjv.txt"

echo "prepare_corpus: extracting and cleaning" >&2
/usr/bin/python3 - "$TMP" "$OUT" "$SEED" "$HELDOUT_BYTES" <<'PY'
import gzip, hashlib, json, os, random, re, sys, unicodedata

tmp, out, seed, heldout_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
X = os.path.join(tmp, "x")


def decode(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("cp1252", errors="replace")


def read_lines(path):
    with open(path, "rb") as f:
        return [decode(l) for l in f.read().split(b"\n")]


CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f\ufffd]")
HSPACE = re.compile(r"[ \t\u00a0]+")


def clean_doc(text):
    """UTF-8 NFC, no control characters, collapsed horizontal space, no empty lines."""
    text = re.sub(r".\x08", "", text)              # backspace overstrike (_\bx, x\bx)
    text = text.replace("\r", "").replace("\f", "\n").replace("\t", " ")
    text = CTRL.sub("", unicodedata.normalize("NFC", text))
    lines = [HSPACE.sub(" ", l).strip() for l in text.split("\n")]
    return "\n".join(l for l in lines if l)


# ---------------------------------------------------------------- GCIDE
ACCENTS = {"'": "\u0301", "`": "\u0300", '"': "\u0308", "^": "\u0302", "~": "\u0303",
           ",": "\u0327"}
WORDS = {"ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ", "eth": "ð", "thorn": "þ", "deg": "°",
         "sect": "§", "root": "√", "imac": "i", "frac12": "½", "frac14": "¼", "frac34": "¾",
         "cre": "è", "ccedil": "ç", "ntilde": "ñ", "uum": "ü", "oum": "ö", "aum": "ä",
         "eum": "ë", "ium": "ï", "pound": "£", "cent": "¢", "times": "×", "divide": "÷",
         "dagger": "†", "para": "¶", "hand": "☞", "prime": "′", "dprime": "″",
         "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "pi": "π", "mu": "μ",
         "lambda": "λ", "sigma": "σ", "omega": "ω", "theta": "θ", "phi": "φ", "psi": "ψ",
         "eta": "η", "epsilon": "ε", "iota": "ι", "kappa": "κ", "nu": "ν", "rho": "ρ",
         "tau": "τ", "chi": "χ", "zeta": "ζ", "xi": "ξ", "omicron": "ο", "upsilon": "υ"}


def charcode(m):
    c = m.group(1)
    if c in WORDS:
        return WORDS[c]
    if len(c) == 2 and c[0] in ACCENTS and c[1].isalpha():      # ['e] ["o] [~n] [,c] [^o]
        return unicodedata.normalize("NFC", c[1] + ACCENTS[c[0]])
    if len(c) == 2 and c[1] == "^" and c[0].isalpha():          # [a^] breve: plain letter
        return c[0]
    if len(c) in (2, 3) and c[0] in "=.-*" and c[1:].isalpha():  # [=a] [.a] [-e] [*a] [=oo]
        return c[1:]
    return m.group(0)


CODE = re.compile(r"\[([^\]\s]{1,7})\]")
SOURCE_TAG = re.compile(r"\[[^\[\]]*(?:Webster|WordNet|PJC|RDH|Century|MW10|Chambers|Encyc|"
                        r"\bAS\b|\bJS\b|\bMPW\b|\bDC\b|\bKBD\b|\bNRN\b|\bRA\b)[^\[\]]*\]")
BRACES = re.compile(r"[{}]")
TAGS = re.compile(r"</?[a-z][a-z0-9]*>")


def strip_top_brackets(s, keep=lambda inner: False):
    """Removes top-level [...] groups (nesting-aware) unless keep(inner)."""
    out, depth, start, buf = [], 0, 0, []
    for i, ch in enumerate(s):
        if ch == "[":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "]" and depth > 0:
            depth -= 1
            if depth == 0:
                inner = s[start + 1:i]
                if keep(inner):
                    out.append(s[start:i + 1])
            continue
        if depth == 0 and ch != "]":
            out.append(ch)
    return "".join(out)


LABEL = re.compile(r"^(?:Obs|R|Colloq|Archaic|Rare|Prov\. Eng|Eng|Scot|U\. ?S|Slang|slang|"
                   r"Poetic|Local|Law|Cant|Vulgar|Low|Dial)\.?$")


def _close(s):
    """Index of the bracket closing the [ at s[0] (or len(s) - 1)."""
    depth = 0
    for i, ch in enumerate(s):
        depth += (ch == "[") - (ch == "]")
        if depth == 0:
            return i
    return len(s) - 1


TAG_TAIL = re.compile(r"^(\s*\[(?:1913 Webster|Webster 1913 Suppl\.|WordNet 1\.5|PJC)\]).*$")
RESPELL = re.compile(r" ?\([^()\s]*[a-z][*\"`][a-z][^()]*\)")   # (e*kon"o*mizd)
MARKS = re.compile(r"(?<=[^\W\d_])[*\"`](?=[^\W\d_])")          # Au*thor"i*ta*tive*ly


def gcide_entry(lines):
    """One dictionary entry (first line at column 0) -> readable text, or None."""
    first = lines[0]
    if first.startswith("00-") or "\\" not in first:
        return None
    # Header: the first line, plus continuation lines while a [...] group is open.
    # (alternative forms may continue it at column 0: "Epigrammatic \..\, Epigrammatical\n\..\").
    depth, n = 0, 0
    for n, l in enumerate(lines):
        depth += l.count("[") - l.count("]")
        if depth <= 0 and not (n + 1 < len(lines) and lines[n + 1][:1] not in ("", " ")):
            break
    header = " ".join(x.strip() for x in lines[:n + 1])
    body = lines[n + 1:]
    # "Head \Pro*nun"ci*a`tion\ (pron), Alt \Alt\, n. [etym] (Zool.)": drop the \..\ forms and
    # the respelling in parentheses, keep the headwords and the part of speech.
    head, _, rest = header.partition("\\")
    rest = re.sub(r"\\[^\\]*\\", "", "\\" + rest)
    rest = re.sub(r"\([^()]*[\[\"*`][^()]*\)", "", rest)
    head = CODE.sub(charcode, head.strip())
    rest = CODE.sub(charcode, rest.strip())
    if not head:
        return None
    rest = strip_top_brackets(rest, keep=lambda inner: bool(LABEL.match(inner.strip())))
    rest = rest.lstrip(",; ").strip()
    # Body paragraphs (split at blank lines; quotations and notes keep their own paragraph).
    paras, cur = [], []
    for l in body:
        l = TAG_TAIL.sub(r"\1", l)             # "[1913 Webster] Hindoostani" (stray words)
        if l.strip():
            cur.append(l.strip())
        elif cur:
            paras.append(" ".join(cur)); cur = []
    if cur:
        paras.append(" ".join(cur))
    outp = []
    for i, p in enumerate(paras):
        p = SOURCE_TAG.sub("", p)
        p = CODE.sub(charcode, p)
        if i == 0:      # inflections / etymology that did not fit on the header line
            while p.startswith("[") and not LABEL.match(p[1:p.find("]")].strip()):
                q = strip_top_brackets(p[:_close(p) + 1]) + p[_close(p) + 1:]
                if q == p:
                    break
                p = q.strip()
        p = RESPELL.sub("", p)
        p = MARKS.sub("", p)
        p = TAGS.sub("", BRACES.sub("", p))
        p = re.sub(r"^Syn: ", "Synonyms: ", p)
        p = re.sub(r"\s+", " ", p).strip()
        if not p or re.fullmatch(r"\[[^\]]*\]|\W*", p) or "http://" in p or "https://" in p:
            continue
        outp.append(p)
    rest = MARKS.sub("", rest).strip().strip(",;").strip()
    headline = head + (", " + rest if rest else "")
    if outp and outp[0].startswith(","):      # respelling and ", n." were on the next line
        headline, outp = headline + outp[0], outp[1:]
    elif not outp:
        return None
    headline = TAGS.sub("", BRACES.sub("", SOURCE_TAG.sub("", headline)))
    headline = re.sub(r"\s+([,;.])", r"\1", re.sub(r"\s+", " ", headline)).strip()
    return "\n".join([headline] + outp)


def gcide_docs(path, page_bytes=3000):
    with gzip.open(path, "rb") as f:
        lines = [decode(l) for l in f.read().split(b"\n")]
    entries, cur = [], []
    for l in lines:
        if l and not l[0].isspace() and l[0] != "\\":
            if cur:
                entries.append(cur)
            cur = [l]
        elif cur:
            cur.append(l.rstrip())
    if cur:
        entries.append(cur)
    docs, page, size = [], [], 0
    for e in entries:
        t = gcide_entry(e)
        if t is None:
            continue
        page.append(t); size += len(t)
        if size >= page_bytes:
            docs.append("\n".join(page)); page, size = [], 0
    if page:
        docs.append("\n".join(page))
    return docs


# ---------------------------------------------------------------- fortunes
def fortune_docs(folder):
    docs = []
    for name in sorted(os.listdir(folder)):
        p = os.path.join(folder, name)
        if name.endswith(".dat") or name.endswith(".u8") or os.path.islink(p) or \
                not os.path.isfile(p) or name in ("ascii-art",):
            continue
        cur = []
        for l in read_lines(p):
            if l.rstrip() == "%":
                docs.append("\n".join(cur)); cur = []
            else:
                cur.append(l)
        docs.append("\n".join(cur))
    return docs


# ---------------------------------------------------------------- KJV
def kjv_docs(path):
    # The reader prints "\nGenesis 1\n\n  1 In the beginning ...": a chapter title is an
    # unindented line after a blank one; other unindented lines continue the verse above.
    docs, title, verses, blank = [], None, [], True
    for l in read_lines(path):
        if not l.strip():
            blank = True
            continue
        was_blank, blank = blank, False
        m = re.match(r"^  (\d+) (.*)$", l)
        if m:
            verses.append([m.group(1), m.group(2).strip()])
        elif verses and not was_blank:
            verses[-1][1] += " " + l.strip()     # wrapped continuation of a verse
        else:
            if title and verses:
                docs.append(title + "\n" + "\n".join(f"{n} {t}" for n, t in verses))
            title, verses = l.strip(), []
    if title and verses:
        docs.append(title + "\n" + "\n".join(f"{n} {t}" for n, t in verses))
    return docs


sources = {
    "gcide": gcide_docs(os.path.join(X, "usr/share/dictd/gcide.dict.dz")),
    "fortunes": fortune_docs(os.path.join(X, "usr/share/games/fortunes")),
    "kjv": kjv_docs(os.path.join(tmp, "kjv.txt")),
}
seen, stats = set(), {}
cleaned = {}
for src, docs in sources.items():
    keep = []
    for d in docs:
        d = clean_doc(d)
        if len(d) < 20:
            continue
        h = hashlib.sha1(d.encode()).digest()
        if h in seen:
            continue
        seen.add(h); keep.append(d)
    cleaned[src] = keep
total = sum(len(d.encode()) for docs in cleaned.values() for d in docs)
frac = min(0.02, heldout_bytes / total)
rng = random.Random(seed)
train, held = [], []
for src in sorted(cleaned):
    docs = cleaned[src]
    rng.shuffle(docs)
    nb = sum(len(d.encode()) for d in docs)
    hb, k = 0, 0
    while k < len(docs) and hb < frac * nb:
        hb += len(docs[k].encode()); k += 1
    held += docs[:k]; train += docs[k:]
    stats[src] = {"documents": len(docs), "bytes": nb, "heldout_documents": k,
                  "heldout_bytes": hb}
rng.shuffle(train); rng.shuffle(held)
train_text = "\n\n".join(train) + "\n"
held_text = "\n\n".join(held) + "\n"
with gzip.GzipFile(os.path.join(out, "train.txt.gz"), "wb", compresslevel=9, mtime=0) as f:
    f.write(train_text.encode("utf-8"))
with open(os.path.join(out, "heldout.txt"), "wb") as f:
    f.write(held_text.encode("utf-8"))
stats["total"] = {"train_documents": len(train), "train_bytes": len(train_text.encode()),
                  "heldout_documents": len(held), "heldout_bytes": len(held_text.encode()),
                  "seed": seed, "separator": "blank line (\\n\\n) between documents"}
with open(os.path.join(out, "stats.json"), "w") as f:
    json.dump(stats, f, indent=1)
print(json.dumps(stats["total"]), file=sys.stderr)
PY

{
    echo "# Corpus of the asymkv reference model"
    echo
    echo "Made by \`tools/prepare_corpus.sh\` from these Debian 12 packages:"
    echo
    sed 's/^/- /' "$TMP/versions.txt"
    echo
    echo "| source | licence | Debian copyright file |"
    echo "|---|---|---|"
    echo "| GNU Collaborative International Dictionary of English 0.48 (dict-gcide; from Webster's Revised Unabridged Dictionary 1913 and WordNet 1.5) | GPL-2 or later | licenses/dict-gcide.copyright |"
    echo "| fortune cookie databases (fortunes, fortunes-min; fortune-mod 1.99.1) | BSD licence of fortune-mod (University of California, 1991) | licenses/fortunes.copyright, licenses/fortunes-min.copyright |"
    echo "| King James Version of the Bible (bible-kjv-text, printed with bible-kjv's reader) | text public domain (\"copyright ... is expired\"); the Bible Retrieval System files \"unrestricted use\"; Debian's code GPL-2 or later | licenses/bible-kjv-text.copyright, licenses/bible-kjv.copyright |"
    echo
    echo "Documents: dictionary pages of ~3 KB (consecutive entries), one fortune cookie, one Bible"
    echo "chapter. Separated by one blank line. Seed $SEED. Counts in stats.json."
} > "$OUT/SOURCES.md"

echo "prepare_corpus: wrote $OUT" >&2
ls -l "$OUT" >&2
