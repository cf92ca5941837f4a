"""A word n-gram language model for the lexicon decoder, from public-domain English text, as ARPA.

    .venv/bin/python -m training.ngram_lm --out models/english-trigram.arpa.gz

Unigrams: the lexicon decoder's own, wordfreq's most frequent English words the labels can spell.
Bigrams and trigrams (`--order`) are counted in two public-domain sources:
- four Jane Austen novels from Debian's `r-cran-janeaustenr` package (fetched with `apt-get
  download`, read with `rdata`). Sense and Sensibility and Northanger Abbey are left out because
  realspeech-dev and librispeech-mini-train read from them.
- the King James Bible clauses the synthetic corpus trains on. Held-out clauses are never counted.

P(w | h) = max(c(h, w) - D, 0) / c(h) + D * N1+(h) / c(h) * P(w | h without its first word), down to
P(w) (interpolated absolute discounting). ARPA holds this exactly: each seen n-gram with its
probability, and backoff(h) = D * N1+(h) / c(h).
"""

from __future__ import annotations

import argparse
import gzip
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


def count_ngrams(
    sentences: Iterable[list[str]], vocabulary: set[str], order: int
) -> tuple[dict[int, Counter], int, int]:
    """Counts of the 2- to `order`-grams [n -> Counter of word tuples], with <s> and </s> around each
    sentence; n-grams with a word outside `vocabulary` are skipped. Also the number of sentences and
    of words counted."""
    if order < 2:
        raise ValueError(f"order must be 2 or more, got {order}")
    counts: dict[int, Counter] = {n: Counter() for n in range(2, order + 1)}
    sentence_count = word_count = 0
    for sentence in sentences:
        sentence_count += 1
        word_count += len(sentence)
        tokens = [START, *sentence, END]
        known = [token in vocabulary for token in tokens]
        for n, grams in counts.items():
            grams.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1) if all(known[i : i + n]))
    return counts, sentence_count, word_count


def interpolated_probabilities(
    unigram_log_p: dict[str, float], counts: dict[int, Counter], discount: float
) -> tuple[dict[int, dict[tuple[str, ...], float]], dict[tuple[str, ...], float]]:
    """P(w | h) of every counted n-gram (h, w) [n -> {gram: P}, grouped by history], and backoff(h)
    of every history: P_n(w | h) = max(c(h, w) - D, 0) / c(h) + backoff(h) P_(n-1)(w | h without its
    first word), backoff(h) = D N1+(h .) / c(h), down to the unigrams."""
    probability = {1: {(word,): math.exp(value) for word, value in unigram_log_p.items()}}
    backoff: dict[tuple[str, ...], float] = {}
    for n in sorted(counts):
        followers: dict[tuple[str, ...], dict[str, int]] = defaultdict(dict)
        for gram, count in counts[n].items():
            followers[gram[:-1]][gram[-1]] = count
        lower, probability[n] = probability[n - 1], {}
        for history, following in followers.items():
            total = sum(following.values())
            backoff[history] = discount * len(following) / total
            for word, count in following.items():
                below = lower[(*history[1:], word)]
                probability[n][(*history, word)] = (count - discount) / total + backoff[history] * below
    return probability, backoff


def write_arpa(
    path: Path, unigram_log_p: dict[str, float], counts: dict[int, Counter], discount: float = DISCOUNT
) -> None:
    """ARPA (log10) of the interpolated absolute-discount n-gram over `unigram_log_p` (natural log,
    summing to 1 over words, </s> included); .gz paths are gzipped."""
    if not any(gram[0] == START for gram in counts[2]):
        raise ValueError("no sentence starts with a word of the vocabulary: nothing to count")
    probability, backoff = interpolated_probabilities(unigram_log_p, counts, discount)
    log10 = 1 / math.log(10)

    def entry(log10_p: float, gram: tuple[str, ...]) -> str:
        return f"{log10_p:.6f}\t{' '.join(gram)}" + (f"\t{math.log10(backoff[gram]):.6f}" if gram in backoff else "")

    sizes = [f"ngram 1={len(unigram_log_p) + 2}"] + [f"ngram {n}={len(counts[n])}" for n in sorted(counts)]
    lines = ["", "\\data\\", *sizes, "", "\\1-grams:"]
    lines += [f"-99\t{START}\t{math.log10(backoff[(START,)]):.6f}", f"-99\t{UNKNOWN}"]
    lines += [entry(log_p * log10, (word,)) for word, log_p in unigram_log_p.items()]
    for n in sorted(counts):
        lines += ["", f"\\{n}-grams:"]
        lines += [entry(math.log10(p), gram) for gram, p in probability[n].items()]
    lines += ["", "\\end\\", ""]
    text = "\n".join(lines).encode()
    path.write_bytes(gzip.compress(text, mtime=0) if path.suffix == ".gz" else text)  # same input, same bytes


def english_ngrams(
    sentences: Iterable[list[str]], order: int, words: int = LexiconSettings().words
) -> tuple[dict, dict[int, Counter]]:
    """Unigrams (wordfreq, with </s> at the text's sentence rate) and 2- to `order`-gram counts of `sentences`."""
    spellable, log_p = english_unigrams(list(ENGLISH_LABELS), words)
    counts, sentence_count, word_count = count_ngrams(sentences, {START, END, *spellable}, order)
    end_share = sentence_count / (sentence_count + word_count)
    unigram_log_p = {w: float(p) + math.log1p(-end_share) for w, p in zip(spellable, log_p, strict=True)}
    unigram_log_p[END] = math.log(end_share)
    return unigram_log_p, counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="ARPA file (.arpa or .arpa.gz)")
    parser.add_argument("--order", type=int, default=3, help="longest n-gram counted")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        novels = fetch_austen(Path(scratch))
    sentences = [s for name in AUSTEN_NOVELS for s in prose_sentences(novels[name])]
    sentences += kjv_training_sentences()
    unigram_log_p, counts = english_ngrams(sentences, args.order)
    write_arpa(args.out, unigram_log_p, counts)
    sizes = ", ".join(f"{len(grams)} {n}-grams" for n, grams in counts.items())
    print(f"wrote {args.out}: {len(unigram_log_p)} words, {sizes} from {len(sentences)} sentences")


if __name__ == "__main__":
    main()
