/**
 * (0008,0005) Specific Character Set (PS3.3 C.12.1.1.2, PS3.5 6.1): how a data set's patient and study text is
 * decoded, so that the SR copies names as the modality wrote them. The decoding is dicom-character-set's (MIT,
 * radialogica): every character set the standard defines, code extensions (ISO 2022 escape sequences) included, with
 * the delimiters that reset them per VR (`^` and `=` in a PN).
 */
import { convertBytes } from 'dicom-character-set';

/**
 * A decoder of one element's bytes (`vr` where the data set states it); undefined where the text cannot be read
 * faithfully (an escape sequence of a set the declaration does not designate), which the SR leaves empty rather
 * than write wrongly.
 */
export type TextDecode = (bytes: Uint8Array, vr?: string) => string | undefined;

/**
 * A decoder for text in the declared character set, or undefined where dicom-parser's latin1 reading is already right
 * or the best there is: none declared (the default repertoire is ASCII; Latin-1 reads a stray byte rather than drop
 * it), `ISO_IR 100`, or a declaration the library does not know (read as bytes, as before).
 *
 * The library is robust where the standard is strict, as its README says: a term without code extensions among
 * several is taken as its ISO 2022 equivalent (`ISO_IR 100\ISO 2022 IR 87` as `ISO 2022 IR 100\ISO 2022 IR 87`), a
 * repeated term counts once.
 */
export function textDecoderFor(declared: string | undefined): TextDecode | undefined {
  const value = declared?.trim();
  if (!value || value === 'ISO_IR 100') return undefined;
  try {
    convertBytes(value, new Uint8Array(0));
  } catch {
    return undefined;
  }
  return (bytes, vr) => {
    try {
      return convertBytes(value, bytes, vr ? { vr } : undefined);
    } catch {
      return undefined;
    }
  };
}
