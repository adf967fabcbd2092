// The "auto" format: chooses the model family from the first markup of the reply, then parses as that family.

import type { OpenSection, ParseEvent, ParserOptions, StreamParser } from "./types.js";

export type ParserFactory = (options: ParserOptions) => StreamParser;

/** A marker that, at the very start of a reply, names the family, and the family's parser. */
export type FamilyMarker = readonly [marker: string, family: ParserFactory];

/** Chooses the family from the reply's first markup, holding back only leading whitespace and a partial marker. */
export class AutoParser implements StreamParser {
  private readonly options: ParserOptions;
  private readonly openings: readonly FamilyMarker[];
  private readonly generic: ParserFactory;
  private delegate: StreamParser | undefined;
  private space = "";
  private held = "";

  /** `openings`: markers that name a family at the very start of a reply; `generic`: the family when none does. */
  constructor(options: ParserOptions, openings: readonly FamilyMarker[], generic: ParserFactory) {
    this.options = options;
    this.openings = openings;
    this.generic = generic;
  }

  get unterminated(): OpenSection | undefined {
    return this.delegate?.unterminated;
  }

  feed(chunk: string): ParseEvent[] {
    if (this.delegate !== undefined) return this.delegate.feed(chunk);
    let text = this.held + chunk;
    if (this.held.length === 0) {
      // Leading whitespace is set aside once, so that a long run of it is never scanned again.
      const rest = text.trimStart();
      this.space += text.slice(0, text.length - rest.length);
      text = rest;
    }
    this.held = "";
    if (text.length === 0) return [];
    const factory = this.familyOf(text);
    if (factory === undefined) {
      this.held = text;
      return [];
    }
    return this.delegateTo(factory, text);
  }

  finish(): ParseEvent[] {
    if (this.delegate !== undefined) return this.delegate.finish();
    const delegate = this.generic(this.options);
    this.delegate = delegate;
    const start = this.space + this.held;
    this.space = "";
    this.held = "";
    const out = start.length === 0 ? [] : delegate.feed(start);
    return [...out, ...delegate.finish()];
  }

  /** The family whose marker `text` starts with, generic when none; undefined while it may still be a marker. */
  private familyOf(text: string): ParserFactory | undefined {
    let family: ParserFactory | undefined = this.generic;
    for (const [marker, candidate] of this.openings) {
      if (text.startsWith(marker)) return candidate;
      if (text.length < marker.length && marker.startsWith(text)) family = undefined;
    }
    return family;
  }

  private delegateTo(factory: ParserFactory, text: string): ParseEvent[] {
    const delegate = factory(this.options);
    this.delegate = delegate;
    const start = this.space + text;
    this.space = "";
    return start.length === 0 ? [] : delegate.feed(start);
  }
}
