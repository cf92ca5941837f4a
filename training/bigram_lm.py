"""A word bigram language model for the lexicon decoder, from public-domain English text, as ARPA.

    .venv/bin/python -m training.bigram_lm --out models/english-bigram.arpa.gz

Unigrams: the lexicon decoder's own, wordfreq's most frequent English words the labels can spell.
Bigrams are counted in two public-domain sources:
- four Jane Austen novels from Debian's `r-cran-janeaustenr` package (fetched with `apt-get
  download`, read with `rdata`). Sense and Sensibility and Northanger Abbey are left out because
  realspeech-dev and librispeech-mini-train read from them.
- the King James Bible clauses the synthetic corpus trains on. Held-out clauses are never counted.

P(w | v) = max(c(v, w) - D, 0) / c(v) + D * N1+(v) / c(v) * P(w)  (interpolated absolute discounting)
ARPA holds this exactly: each seen bigram with its probability, and backoff(v) = D * N1+(v) / c(v).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import math
import re
import subprocess
import tempfile
import warnings
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from quantizer.lexicon import LexiconSettings, english_unigrams
from quantizer.nemo_configs import ENGLISH_LABELS

AUSTEN_PACKAGE = "r-cran-janeaustenr"
AUSTEN_NOVELS = ("emma", "mansfieldpark", "persuasion", "prideprejudice")
DISCOUNT = 0.75
START, END, UNKNOWN = "<s>", "</s>", "<unk>"


def austen_novels(package_folder: Path) -> dict[str, str]:
    """Novel name -> text, from the R lazy-load database inside an unpacked r-cran-janeaustenr."""
    import rdata

    def parse(serialized: bytes):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Unknown file type", UserWarning)  # entries carry no RDS header
            return rdata.conversion.convert(rdata.parser.parse_data(serialized))

    data = next(package_folder.rglob("janeaustenr/data/Rdata.rdx")).with_suffix("")
    index = parse(gzip.decompress(data.with_suffix(".rdx").read_bytes()))
    database = data.with_suffix(".rdb").read_bytes()
    novels = {}
    for name, (offset, length) in index["variables"].items():
        blob = database[int(offset) : int(offset) + int(length)]
        lines = parse(zlib.decompress(blob[4:]))  # each entry: 4-byte length, then zlib data
        novels[str(name)] = "\n".join(str(line) for line in lines)
    return novels


def fetch_austen(folder: Path) -> dict[str, str]:
    """Download and unpack the Debian package into `folder`; its novels as text."""
    subprocess.run(["apt-get", "download", AUSTEN_PACKAGE], cwd=folder, check=True, capture_output=True)
    package = next(folder.glob(f"{AUSTEN_PACKAGE}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(package), str(folder / "unpacked")], check=True)
    return austen_novels(folder / "unpacked")


def prose_sentences(text: str) -> Iterator[list[str]]:
    """Running text -> sentences (split at . ! ? ; : and brackets) of lower-case words."""
    for piece in re.split(r"[.!?;:()\"]+", text.lower().replace("\n", " ")):
        words = re.sub(r"[^a-z' ]+", " ", piece).split()
        if len(words) >= 2:
            yield words


def kjv_training_sentences() -> Iterator[list[str]]:
    """The KJV clauses the synthetic corpus may train on, as word lists (held-out ones never)."""
    from training.corpus import is_heldout_sentence, kjv_sentences

    for clause in kjv_sentences():
        if not is_heldout_sentence(clause):
            yield clause.split()


def count_bigrams(sentences: Iterable[list[str]], vocabulary: set[str]) -> tuple[Counter, int, int]:
    """(history, word) counts with <s> and </s> around each sentence; pairs with a word outside
    `vocabulary` are skipped. Also the number of sentences and of words counted."""
    pairs: Counter = Counter()
    sentence_count = word_count = 0
    for sentence in sentences:
        sentence_count += 1
        word_count += len(sentence)
        tokens = [START, *sentence, END]
        pairs.update((a, b) for a, b in itertools.pairwise(tokens) if a in vocabulary and b in vocabulary)
    return pairs, sentence_count, word_count


def write_arpa(path: Path, unigram_log_p: dict[str, float], pairs: Counter, discount: float = DISCOUNT) -> None:
    """ARPA (log10) of the interpolated absolute-discount bigram over `unigram_log_p` (natural log,
    summing to 1 over words, </s> included); .gz paths are gzipped."""
    followers: dict[str, dict[str, int]] = defaultdict(dict)
    for (history, word), count in pairs.items():
        followers[history][word] = count
    if START not in followers:
        raise ValueError("no sentence starts with a word of the vocabulary: nothing to count")
    log10 = 1 / math.log(10)
    backoff = {h: discount * len(f) / sum(f.values()) for h, f in followers.items()}
    lines = ["", "\\data\\", f"ngram 1={len(unigram_log_p) + 2}", f"ngram 2={len(pairs)}", "", "\\1-grams:"]
    lines.append(f"-99\t{START}\t{math.log10(backoff[START]):.6f}")
    lines.append(f"-99\t{UNKNOWN}")
    for word, log_p in unigram_log_p.items():
        lines.append(f"{log_p * log10:.6f}\t{word}" + (f"\t{math.log10(backoff[word]):.6f}" if word in backoff else ""))
    lines += ["", "\\2-grams:"]
    for history, following in followers.items():
        total = sum(following.values())
        for word, count in following.items():
            p = (count - discount) / total + backoff[history] * math.exp(unigram_log_p[word])
            lines.append(f"{math.log10(p):.6f}\t{history} {word}")
    lines += ["", "\\end\\", ""]
    text = "\n".join(lines).encode()
    path.write_bytes(gzip.compress(text, mtime=0) if path.suffix == ".gz" else text)  # same input, same bytes


def english_bigram(sentences: Iterable[list[str]], words: int = LexiconSettings().words) -> tuple[dict, Counter]:
    """Unigrams (wordfreq, with </s> at the text's sentence rate) and bigram counts of `sentences`."""
    spellable, log_p = english_unigrams(list(ENGLISH_LABELS), words)
    pairs, sentence_count, word_count = count_bigrams(sentences, {START, END, *spellable})
    end_share = sentence_count / (sentence_count + word_count)
    unigram_log_p = {w: float(p) + math.log1p(-end_share) for w, p in zip(spellable, log_p, strict=True)}
    unigram_log_p[END] = math.log(end_share)
    return unigram_log_p, pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="ARPA file (.arpa or .arpa.gz)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        novels = fetch_austen(Path(scratch))
    sentences = [s for name in AUSTEN_NOVELS for s in prose_sentences(novels[name])]
    sentences += kjv_training_sentences()
    unigram_log_p, pairs = english_bigram(sentences)
    write_arpa(args.out, unigram_log_p, pairs)
    print(f"wrote {args.out}: {len(unigram_log_p)} words, {len(pairs)} bigrams from {len(sentences)} sentences")


if __name__ == "__main__":
    main()
