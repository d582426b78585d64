/**
 * The part of dcmjs (0.50, which ships no types) that the gateway uses. Extend it here as more is
 * needed rather than reaching for `any` at the call site.
 */
declare module 'dcmjs' {
  /** One element in DICOM JSON form (PS3.18 F.2), as dcmjs reads and writes it. */
  export interface DicomJsonElement {
    vr: string;
    Value?: unknown[] | null;
  }

  /** Elements keyed by tag without punctuation, e.g. `0020000D`. */
  export type DicomJsonDataset = Record<string, DicomJsonElement>;

  /**
   * Elements keyed by keyword (`StudyInstanceUID`). A single value stands alone, several are an
   * array, a sequence is an array of nested datasets; `null` is an empty (type 2) element.
   */
  export interface NaturalDataset {
    [keyword: string]: unknown;
  }

  export interface DicomWriteOptions {
    allowInvalidVRLength?: boolean;
  }

  export interface DicomReadOptions {
    ignoreErrors?: boolean;
    untilTag?: string | null;
    includeUntilTagValue?: boolean;
    noCopy?: boolean;
    forceStoreRaw?: boolean;
  }

  export namespace data {
    /** A Part 10 file: the file meta group and the data set, both in DICOM JSON form. */
    class DicomDict {
      constructor(meta: DicomJsonDataset);
      meta: DicomJsonDataset;
      dict: DicomJsonDataset;
      /** Preamble, `DICM`, file meta (explicit VR little endian) and the data set in meta's transfer syntax. */
      write(options?: DicomWriteOptions): ArrayBuffer;
    }

    class DicomMessage {
      static readFile(buffer: ArrayBuffer, options?: DicomReadOptions): DicomDict;
    }

    class DicomMetaDictionary {
      static naturalizeDataset(dataset: DicomJsonDataset): NaturalDataset;
      static denaturalizeDataset(dataset: NaturalDataset): DicomJsonDataset;
    }
  }

  export type LogLevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** 0 trace ... 5 silent. */
  export type LogLevelNumber = 0 | 1 | 2 | 3 | 4 | 5;

  /** dcmjs logs through its own bundled copy of loglevel. */
  export interface Logger {
    getLevel(): LogLevelNumber;
    /** `persist` defaults to true, which only matters in a browser; pass false. */
    setLevel(level: LogLevelNumber | LogLevelName, persist?: boolean): void;
    /** A named child logger, created on first use; dcmjs uses `validation.dcmjs`. */
    getLogger(name: string): Logger;
    trace(...message: unknown[]): void;
    debug(...message: unknown[]): void;
    info(...message: unknown[]): void;
    warn(...message: unknown[]): void;
    error(...message: unknown[]): void;
  }

  export const log: Logger;
}
