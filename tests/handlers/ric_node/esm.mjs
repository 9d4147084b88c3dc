// An ES module handler: aws-lambda-ric loads .mjs files with import().
export const handler = async (event) => ({ esm: true, event });
