import { getMetadataStorage, ValidationArguments, ValidationError, ValidatorOptions } from 'class-validator';

/**
 * class-validator reports a check made with `{ each: true }` (`@IsInt({ each: true })`) on the array, not on the item
 * that failed it: `repaymentStatus: each value must be an integer number`, with the whole array as its value. This
 * runs each such check again on each item, by the same constraint and arguments (found in class-validator's metadata
 * by the class of the object the error came from), and moves the failure to an error per failing item, whose property
 * is its index, so that the field is named `repaymentStatus[3]`. The checks of the array itself (its size) stay on it.
 * Works on the errors of `object`, the class instance that was validated, in place.
 */
export async function indexEachErrors(
  object: unknown,
  errors: ValidationError[],
  options: ValidatorOptions = {},
): Promise<void> {
  if (typeof object !== 'object' || object === null) return;
  for (const error of errors) {
    const value = (object as Record<string, unknown>)[error.property];
    if (error.constraints && Array.isArray(value)) await splitEachError(object, error, value, options);
    if (error.children?.length) await indexEachErrors(value, error.children, options);
  }
}

async function splitEachError(
  object: object,
  error: ValidationError,
  items: unknown[],
  options: ValidatorOptions,
): Promise<void> {
  const constraints = error.constraints ?? {};
  const storage = getMetadataStorage();
  const metadatas = storage
    .getTargetValidationMetadatas(
      object.constructor,
      '',
      options.always ?? false,
      options.strictGroups ?? false,
      options.groups,
    )
    .filter((m) => m.propertyName === error.property && m.each && m.constraintCls);
  const failed = new Map<number, Record<string, string>>();
  for (const metadata of metadatas) {
    for (const constraint of storage.getTargetValidatorConstraints(metadata.constraintCls)) {
      const message = constraints[constraint.name];
      if (message === undefined) continue;
      let found = false;
      for (const [index, item] of items.entries()) {
        const args: ValidationArguments = {
          targetName: object.constructor.name,
          property: error.property,
          object,
          value: item,
          constraints: metadata.constraints,
        };
        if (await constraint.instance.validate(item, args)) continue;
        found = true;
        failed.set(index, { ...failed.get(index), [constraint.name]: itemMessage(error.property, message) });
      }
      // Left on the array where no single item fails it again (a check that looks at the whole array).
      if (found) delete constraints[constraint.name];
    }
  }
  if (failed.size === 0) return;
  if (Object.keys(constraints).length === 0) delete error.constraints;
  const children = [...failed]
    .sort(([a], [b]) => a - b)
    .map(([index, itemConstraints]) => ({
      property: String(index),
      value: items[index],
      constraints: itemConstraints,
      children: [],
    }));
  error.children = [...children, ...(error.children ?? [])];
}

/** `each value in repaymentStatus must be ...` said of one item: `must be ...`; a message of the DTO's own as it is. */
function itemMessage(property: string, message: string): string {
  const each = `each value in ${property} `;
  return message.startsWith(each) ? message.slice(each.length) : message;
}
