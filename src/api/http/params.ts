import { InputError } from "../../common/errors.ts";

/** Parses an integer query parameter; a bad value is a 400 naming the parameter. */
export function intParam(
  raw: string | undefined,
  name: string,
  options: { min: number; max: number; fallback: number },
): number {
  if (raw === undefined || raw === "") return options.fallback;
  if (!/^\d+$/.test(raw)) {
    throw new InputError(
      "bad_query",
      `Invalid query parameter ${name}=${JSON.stringify(raw)}: expected a whole number`,
    );
  }
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < options.min || value > options.max) {
    throw new InputError(
      "bad_query",
      `Invalid query parameter ${name}=${raw}: expected ${options.min} to ${options.max}`,
    );
  }
  return value;
}
