/** dicom-character-set (MIT, radialogica) ships no types: the one function the gateway calls. */
declare module 'dicom-character-set' {
  /**
   * DICOM text bytes in the Specific Character Set `specificCharacterSet` (0008,0005) as a string, code extensions
   * followed; `vr` tells it which delimiters reset the character set (`^` and `=` in a PN). Throws on a term or an
   * escape sequence it does not know.
   */
  export function convertBytes(
    specificCharacterSet: string | undefined,
    bytes: Uint8Array,
    options?: { vr?: string },
  ): string;
}
