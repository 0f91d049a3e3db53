/** The default ONNX operator domain is spelled '' or 'ai.onnx'. */
export function isDefaultDomain(domain: string | null | undefined): boolean {
  return !domain || domain === 'ai.onnx';
}
