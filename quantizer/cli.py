"""`qasr` command line: `qasr quantize MODEL.nemo --out DIR [options]`, `qasr eval --model DIR --manifest F`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from quantizer.calibrate import CALIBRATION_METHODS
from quantizer.checkpoint import CheckpointError, UnsupportedModelError
from quantizer.cpu import INT8_WEIGHT_TYPES, int8_weight_type
from quantizer.evaluate import Evaluation, evaluate
from quantizer.integer_model import IntegerModel
from quantizer.lexicon import DECODERS, SHIPPED_LANGUAGE_MODEL, LexiconSettings
from quantizer.lexicon_workers import SearchError, SearchWorkers, worker_count
from quantizer.onnx_export import write_backends
from quantizer.pipeline import WEIGHT_ROUNDINGS, CalibrationSettings, quantize_checkpoint
from quantizer.quantize import QuantSettings
from quantizer.runtime import BACKENDS, DEVICES, ProviderError, device_for
from quantizer.significance import paired_bootstrap_interval
from quantizer.synthetic import SyntheticSettings

REPORT_FILE = "report.json"


def _add_quantize(commands) -> None:
    parser = commands.add_parser("quantize", help="quantize a .nemo CTC checkpoint to an integer model, no data needed")
    parser.add_argument("model", type=Path, help="a NeMo .nemo checkpoint (EncDecCTCModel, ConvASR encoder)")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for model.json, weights.npz, report.json and *.onnx"
    )
    defaults = SyntheticSettings()
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--samples", type=int, default=defaults.samples, help="synthetic calibration inputs")
    parser.add_argument("--frames", type=int, default=defaults.frames, help="longest input, 10 ms frames")
    parser.add_argument(
        "--min-frames",
        type=int,
        default=defaults.min_frames,
        help="shortest input; equal to --frames for the paper's fixed length",
    )
    parser.add_argument("--iters", type=int, default=defaults.iters, help="Adam steps per batch")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--per-sample", action="store_true", help="also match BN statistics per utterance")
    parser.add_argument("--no-input-prior", action="store_true", help="do not per-feature normalise the inputs")
    parser.add_argument(
        "--white-start", action="store_true", help="start from white noise (the paper) instead of speech-like noise"
    )
    parser.add_argument("--weight-bits", type=int, default=8)
    parser.add_argument("--act-bits", type=int, default=8)
    parser.add_argument("--calib", choices=CALIBRATION_METHODS, default=CalibrationSettings().method)
    parser.add_argument("--percentile", type=float, default=CalibrationSettings().percentile)
    parser.add_argument(
        "--equalize",
        type=float,
        default=CalibrationSettings().equalize,
        help="channel equalization strength, 0 (off) to 1: rescales channels so one activation scale fits them",
    )
    parser.add_argument(
        "--rounding",
        choices=WEIGHT_ROUNDINGS,
        default=CalibrationSettings().rounding,
        help="int8 weight codes: nearest, or gptq (compensate rounding errors on the synthetic inputs)",
    )
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=CalibrationSettings().eval_samples,
        help="held-out synthetic inputs for the report",
    )
    parser.add_argument(
        "--int8-weights",
        choices=("auto", *INT8_WEIGHT_TYPES),
        default="auto",
        help="weight type of int8.onnx: auto picks u8 on x86 CPUs without VNNI (no int16 saturation), else s8",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")


def _quantize(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    synthetic = SyntheticSettings(
        samples=args.samples,
        frames=args.frames,
        min_frames=min(args.min_frames, args.frames),
        iters=args.iters,
        batch_size=args.batch_size,
        lr=args.lr,
        per_sample=args.per_sample,
        input_prior=not args.no_input_prior,
        speech_like_start=not args.white_start,
        seed=args.seed,
    )
    model, report, graph = quantize_checkpoint(
        args.model,
        synthetic,
        QuantSettings(args.weight_bits, args.act_bits),
        CalibrationSettings(args.calib, args.percentile, args.eval_samples, args.equalize, args.rounding),
        progress=True,
    )
    start = time.perf_counter()
    model.save(args.out)
    report["int8_weights"] = int8_weight_type() if args.int8_weights == "auto" else args.int8_weights
    report["onnx_bytes"] = write_backends(args.out, model, graph, report["int8_weights"])
    report["seconds"]["export"] = round(time.perf_counter() - start, 3)
    (args.out / REPORT_FILE).write_text(json.dumps(report, indent=1))
    size = report["size"]
    print(
        f"wrote {args.out}: {report['parameters']:,} parameters, {size['fp32_bytes'] / 1e6:.1f} MB fp32 -> "
        f"{size['quantized_bytes'] / 1e6:.1f} MB ({size['compression']:.2f}x); BN loss "
        f"{report['synthetic']['initial_loss']:.3f} -> {report['synthetic']['final_loss']:.3f}; argmax agreement "
        f"with FP32 {report['argmax_agreement']:.2%}; seconds {report['seconds']}"
    )
    return 0


def _add_eval(commands) -> None:
    parser = commands.add_parser("eval", help="WER and CER of a quantized model's backends on NeMo manifests")
    parser.add_argument("--model", type=Path, required=True, help="a folder written by qasr quantize")
    parser.add_argument(
        "--manifest",
        type=Path,
        action="append",
        required=True,
        help="NeMo manifest of 16 kHz audio; repeat to pool several (WER is then also printed per manifest)",
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="repeat to compare side by side (default: fp32 and integer)",
    )
    parser.add_argument("--per-utterance", action="store_true", help="print reference and hypotheses per line")
    parser.add_argument(
        "--group-by", metavar="FIELD", help="also print WER per value of this manifest field (speaker, say)"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--device", choices=DEVICES, default="cpu", help="for qdq and fp32; integer and int8 run on the CPU only"
    )
    lexicon = LexiconSettings()
    parser.add_argument(
        "--decoder",
        choices=DECODERS,
        default="greedy",
        help="greedy CTC, or beam search over English words scored by a word language model",
    )
    parser.add_argument("--lm-weight", type=float, default=lexicon.lm_weight, help="lexicon: weight of ln P(word)")
    parser.add_argument("--word-score", type=float, default=lexicon.word_score, help="lexicon: added per word")
    parser.add_argument("--beam", type=int, default=lexicon.beam, help="lexicon: hypotheses kept per frame")
    parser.add_argument(
        "--token-beam", type=int, default=lexicon.token_beam, help="lexicon: most likely classes tried per frame"
    )
    parser.add_argument(
        "--beam-threshold",
        type=float,
        default=lexicon.beam_threshold,
        help="lexicon: hypotheses this far (log-probability) below the best are dropped",
    )
    parser.add_argument(
        "--language-model",
        default=str(SHIPPED_LANGUAGE_MODEL),
        help="lexicon: ARPA n-gram file (.arpa or .arpa.gz; default: the shipped English trigram); "
        "'' for wordfreq unigrams",
    )
    parser.add_argument("--words", type=int, default=lexicon.words, help="lexicon without an ARPA: most frequent words")
    parser.add_argument("--vocabulary", default="", help="lexicon: text file of words to add, one per line")
    parser.add_argument(
        "--search-workers",
        type=int,
        default=0,
        help="lexicon: worker processes searching side by side (default 0: one per core)",
    )


def _eval(args: argparse.Namespace) -> int:
    backends = args.backend or ["fp32", "integer"]
    if args.decoder != "lexicon":
        return _report_eval(args, [_evaluate(args, b, None) for b in backends])
    settings = LexiconSettings(
        words=args.words,
        lm_weight=args.lm_weight,
        word_score=args.word_score,
        beam=args.beam,
        token_beam=args.token_beam,
        beam_threshold=args.beam_threshold,
        language_model=args.language_model,
        vocabulary=args.vocabulary,
    )
    labels = IntegerModel.load(args.model).labels
    with SearchWorkers(labels, settings, worker_count(args.search_workers)) as lexicon:
        return _report_eval(args, [_evaluate(args, b, lexicon) for b in backends])


def _evaluate(args: argparse.Namespace, backend: str, lexicon: SearchWorkers | None) -> Evaluation:
    device = device_for(backend, args.device)
    return evaluate(args.model, args.manifest, backend, args.batch, args.threads, device, lexicon, args.group_by)


def _report_eval(args: argparse.Namespace, results: list[Evaluation]) -> int:
    if args.per_utterance:
        for i, audio in enumerate(results[0].audio):
            print(f"{audio.name}\tref\t{results[0].references[i]}")
            for result in results:
                print(f"{audio.name}\t{result.backend}\t{result.hypotheses[i]}")
    first = results[0]
    print(f"{len(first.references)} utterances, {first.seconds / 60:.1f} min of audio, {args.decoder} decoding")
    print("| backend | provider | WER % | CER % | WER change vs first | 95 % interval of the change |")
    print("| --- | --- | --- | --- | --- | --- |")
    for result in results:
        change = 100 * (result.wer - first.wer)
        provider = result.provider.removesuffix("ExecutionProvider")
        interval = ""
        if result is not first:
            low, high = paired_bootstrap_interval(first.edits, result.edits, first.words)
            interval = f"{100 * low:+.2f} .. {100 * high:+.2f}"
        print(
            f"| {result.backend} | {provider} | {100 * result.wer:.2f} | {100 * result.cer:.2f} | {change:+.2f} "
            f"| {interval} |"
        )
    print("(interval: paired bootstrap over utterances, 10,000 resamples)")
    if args.group_by:
        _print_groups(args.group_by, results, [result.wer_by_group() for result in results])
    if len(args.manifest) > 1:
        _print_groups("manifest", results, [result.wer_by_group(result.manifests) for result in results])
    return 0


def _print_groups(field: str, results: list[Evaluation], tables: list[dict[str, tuple[int, int, float]]]) -> None:
    print(f"\n| {field} | utterances | words | " + " | ".join(f"{r.backend} WER %" for r in results) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in results) + " |")
    for group, (utterances, words, _) in tables[0].items():
        rates = " | ".join(f"{100 * table[group][2]:.2f}" for table in tables)
        print(f"| {group} | {utterances} | {words} | {rates} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qasr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_quantize(commands)
    _add_eval(commands)
    args = parser.parse_args(argv)
    try:
        return _eval(args) if args.command == "eval" else _quantize(args)
    except (CheckpointError, UnsupportedModelError, ProviderError, SearchError, ValueError, FileNotFoundError) as error:
        print(f"qasr {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
