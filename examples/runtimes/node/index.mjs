export const handler = async (event, context) => {
  console.log(`${event.Records?.length ?? 0} records`);
  return { batchItemFailures: [], from: context.functionName };
};
